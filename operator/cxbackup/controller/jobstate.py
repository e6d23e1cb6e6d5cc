"""What the controllers read from any Job they created: finished or not, outcome, times, accounted."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

__all__ = ["ANNOTATION_ACCOUNTED", "ANNOTATION_RUN_START", "JobState", "parse_time", "read_job_state"]

ANNOTATION_RUN_START = "cxbackup.io/run-start"
ANNOTATION_ACCOUNTED = "cxbackup.io/accounted"


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.UTC)


@dataclass(frozen=True)
class JobState:
    """A Job's terminal conditions (Complete / Failed) and the annotations cxbackup puts on it."""

    name: str
    run_start: dt.datetime
    finished: bool
    succeeded: bool
    completion_time: dt.datetime | None
    failure_message: str
    accounted: bool


def read_job_state(job: dict[str, Any]) -> JobState:
    meta = job.get("metadata", {})
    ann = meta.get("annotations") or {}
    status = job.get("status") or {}
    conds = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    complete = "Complete" in conds
    failed = "Failed" in conds
    message = ""
    if failed:
        c = conds["Failed"]
        message = f"{c.get('reason', 'Failed')}: {c.get('message', '')}".strip(": ")
    start = parse_time(ann.get(ANNOTATION_RUN_START)) or parse_time(meta.get("creationTimestamp"))
    return JobState(
        name=meta.get("name", ""),
        run_start=start or dt.datetime.fromtimestamp(0, dt.UTC),
        finished=complete or failed,
        succeeded=complete and not failed,
        completion_time=parse_time(status.get("completionTime"))
        or parse_time((conds.get("Failed") or conds.get("Complete") or {}).get("lastTransitionTime")),
        failure_message=message,
        accounted=ann.get(ANNOTATION_ACCOUNTED) == "true",
    )

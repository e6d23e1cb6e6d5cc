"""What the controllers read from any Job they created: finished or not, outcome, times, accounted."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

from cxbackup.core.times import parse_time

__all__ = [
    "ANNOTATION_ACCOUNTED",
    "ANNOTATION_RUN_START",
    "STUCK_REASONS",
    "JobState",
    "PodProblem",
    "parse_time",
    "pod_problems",
    "read_job_state",
]

ANNOTATION_RUN_START = "cxbackup.io/run-start"
ANNOTATION_ACCOUNTED = "cxbackup.io/accounted"


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

    @property
    def active(self) -> bool:
        return not self.finished

    def fields(self) -> dict[str, Any]:
        """The fields as keyword arguments, for a view that extends this state."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(JobState)}


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


# Waiting reasons of a container that will not start by itself: the image is missing or its configuration
# (a Secret, a ConfigMap, a key) cannot be resolved.
STUCK_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
_HINTS = {
    "OOMKilled": "the worker hit its memory limit: raise spec.pod.resources.limits.memory",
    "ErrImageNeverPull": "the worker image is not on the node and its pull policy is Never",
    "ErrImagePull": "the node cannot pull the worker image: check the image name and the registry",
    "ImagePullBackOff": "the node cannot pull the worker image: check the image name and the registry",
    "CreateContainerConfigError": "a Secret, ConfigMap or key the worker needs is missing",
    "Unschedulable": "no node can run the worker pod (e.g. its PVC is not bound, or no node has room)",
}


@dataclass(frozen=True)
class PodProblem:
    """One cause why a Job's pod failed or cannot start."""

    pod: str
    reason: str
    detail: str
    waiting: bool  # the container waits to start (and will not by itself), rather than having ended

    def __str__(self) -> str:
        hint = _HINTS.get(self.reason, "")
        return f"pod {self.pod}: " + ": ".join(x for x in (self.reason + self.detail, hint) if x)


def pod_problems(pods: list[dict[str, Any]], *, limit: int = 3) -> list[PodProblem]:
    """Why a Job's pods failed or cannot start, one per distinct cause, newest pod first: containers
    killed (OOMKilled, a signal, a non-zero exit), containers stuck waiting (image missing, configuration
    error) and pods the node failed (evicted, deadline)."""
    ordered = sorted(pods, key=lambda p: str(p.get("metadata", {}).get("creationTimestamp", "")), reverse=True)
    found: list[PodProblem] = []
    seen: set[tuple[str, str]] = set()
    for pod in ordered:
        name = pod.get("metadata", {}).get("name", "")
        status = pod.get("status") or {}
        causes: list[PodProblem] = []
        for container in status.get("containerStatuses") or []:
            state = container.get("state") or {}
            terminated = state.get("terminated") or (container.get("lastState") or {}).get("terminated")
            waiting = state.get("waiting")
            if terminated and terminated.get("exitCode", 0) != 0:
                reason = terminated.get("reason") or "Error"
                causes.append(PodProblem(name, reason, f" (exit code {terminated.get('exitCode')})", waiting=False))
            elif waiting and waiting.get("reason") in STUCK_REASONS:
                detail = (waiting.get("message") or "").strip()[:200]
                causes.append(PodProblem(name, waiting["reason"], f" ({detail})" if detail else "", waiting=True))
        unscheduled = [
            c
            for c in status.get("conditions") or []
            if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable"
        ]
        if not causes and status.get("phase") == "Pending" and unscheduled:
            detail = (unscheduled[0].get("message") or "").strip()[:200]
            causes.append(PodProblem(name, "Unschedulable", f" ({detail})" if detail else "", waiting=True))
        if not causes and status.get("phase") == "Failed" and status.get("reason"):
            detail = (status.get("message") or "").strip()[:200]
            causes.append(PodProblem(name, status["reason"], f" ({detail})" if detail else "", waiting=False))
        for cause in causes:
            if (cause.reason, cause.detail) not in seen:
                seen.add((cause.reason, cause.detail))
                found.append(cause)
    return found[:limit]

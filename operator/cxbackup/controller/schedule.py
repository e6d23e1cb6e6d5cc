"""When runs are due: cron schedules with a time zone, missed runs caught up once. Pure functions.

A schedule's next time is computed after the later of the last run start and the resource's creation.
When the operator was down over several slots, `next_due` is in the past and exactly one run starts;
the next slot is then computed from the run's start time, not from each missed slot.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, croniter

from cxbackup.core.times import parse_time

__all__ = [
    "RUN_NOW_ANNOTATION",
    "ScheduleError",
    "expected_interval",
    "next_after",
    "run_due",
    "validate_schedule",
]


class ScheduleError(ValueError):
    """A cron expression or time zone that cannot be used; the message names the field."""


def _zone(time_zone: str | None) -> dt.tzinfo:
    if not time_zone:
        return dt.UTC
    try:
        return ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(
            f"spec.timeZone: unknown time zone {time_zone!r} (use an IANA name such as Europe/Berlin)"
        ) from exc


def validate_schedule(schedule: str, time_zone: str | None = None) -> None:
    """Raise ScheduleError naming spec.schedule / spec.timeZone when either is unusable."""
    _zone(time_zone)
    if len(schedule.split()) != 5:
        raise ScheduleError(f"spec.schedule: {schedule!r} must have 5 fields (minute hour day month weekday)")
    try:
        croniter(schedule, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    except (CroniterBadCronError, ValueError, KeyError) as exc:
        raise ScheduleError(f"spec.schedule: {schedule!r} is not a valid cron expression: {exc}") from exc


def next_after(schedule: str, time_zone: str | None, after: dt.datetime) -> dt.datetime:
    """The first scheduled time strictly after `after`, in UTC."""
    validate_schedule(schedule, time_zone)
    local = after.astimezone(_zone(time_zone))
    nxt: dt.datetime = croniter(schedule, local).get_next(dt.datetime)
    return nxt.astimezone(dt.UTC)


def expected_interval(schedule: str, time_zone: str | None, now: dt.datetime) -> float:
    """Seconds between the next two scheduled times (what the no-recent-success alert doubles)."""
    first = next_after(schedule, time_zone, now)
    second = next_after(schedule, time_zone, first)
    return (second - first).total_seconds()


RUN_NOW_ANNOTATION = "cxbackup.io/run-now"


def run_due(
    *,
    metadata: dict[str, Any],
    suspend: bool,
    schedule: str | None,
    time_zone: str | None,
    last_trigger: str | None,
    last_run_generation: int | None,
    next_schedule_time: dt.datetime | None,
    job_starts: list[dt.datetime],
    now: dt.datetime,
) -> tuple[dt.datetime, str] | None:
    """(slot, reason) when a run of a backup or export is due, else None; the slot names the run.

    Due: at creation (Created); when the run-now annotation has a value not yet answered (Triggered); for a
    one-shot resource when metadata.generation passed the last run's (SpecChanged); on the schedule
    (Scheduled; after downtime once, for the stored next time). Never while suspended.
    """
    if suspend:
        return None
    trigger = (metadata.get("annotations") or {}).get(RUN_NOW_ANNOTATION)
    if trigger and trigger != last_trigger:
        return now, "Triggered"
    created_text = metadata.get("creationTimestamp")
    created = parse_time(created_text) or now
    if last_run_generation is None and not job_starts:
        return created.replace(microsecond=0), "Created"
    if schedule is None:
        generation = metadata.get("generation")
        if generation is not None and (last_run_generation or 0) < generation:
            return now, "SpecChanged"
        return None
    nxt = next_schedule_time or next_after(schedule, time_zone, max([created, *job_starts]))
    if now >= nxt:
        return nxt, "Scheduled"
    return None

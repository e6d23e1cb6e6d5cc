"""The retention sweep: delete artifacts whose expiresAt has come, and nothing else.

CDDS keeps exported files 30 days (an ExportJob's retentionDays), then deletes them. `sweep(store, now)`
deletes exactly the artifacts the store recognises (our names with our metadata, see store.py) whose
expiresAt <= now; files it did not write, artifacts not yet expired and anything without valid
metadata are left alone. `clean_staging` removes the staging areas of runs that were killed before
they could publish or discard them (a day after the run started, so no run in progress is touched).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta

from cxbackup.export.errors import StoreError
from cxbackup.export.store import ArtifactInfo, ArtifactStore, staging_started

__all__ = ["STAGING_GRACE", "SweepError", "clean_staging", "due_for_deletion", "sweep"]

log = logging.getLogger(__name__)

STAGING_GRACE = timedelta(days=1)


class SweepError(StoreError):
    """Some expired artifacts could not be deleted; `deleted` lists those that were."""

    def __init__(self, message: str, deleted: list[ArtifactInfo]) -> None:
        super().__init__(message)
        self.deleted = deleted


def due_for_deletion(artifacts: list[ArtifactInfo], now: datetime) -> list[ArtifactInfo]:
    """The artifacts whose expiresAt <= now."""
    return [a for a in artifacts if a.is_expired(now)]


def sweep(store: ArtifactStore, now: datetime, *, dry_run: bool = False) -> list[ArtifactInfo]:
    """Delete every expired artifact; returns them (with `expired=True`), or what would go with dry_run.

    One failed deletion does not stop the others; SweepError afterwards names the failures.
    """
    deleted: list[ArtifactInfo] = []
    failures: list[str] = []
    for info in due_for_deletion(store.list(), now):
        if not dry_run:
            try:
                store.delete(info.name)
            except StoreError as exc:
                failures.append(str(exc))
                continue
            log.info("deleted %s (expired %s)", info.name, info.expires_at.isoformat())
        deleted.append(replace(info, expired=True))
    if failures:
        raise SweepError(f"{len(failures)} expired artifact(s) not deleted: {failures[0]}", deleted)
    return deleted


def clean_staging(
    store: ArtifactStore, now: datetime, *, grace: timedelta = STAGING_GRACE, dry_run: bool = False
) -> list[str]:
    """Remove staging areas of runs that started more than `grace` ago; returns their ids."""
    removed: list[str] = []
    for staging_id in store.staging_areas():
        started = staging_started(staging_id)
        if started is None or started > now - grace:
            continue
        if not dry_run:
            store.discard(staging_id)
            log.info("removed the staging area %s of a run that never finished", staging_id)
        removed.append(staging_id)
    return removed

"""What an export run produced (`ExportResult`) and its compact JSON for a termination message.

`ExportResult.to_json()` is at most 4096 bytes (a Kubernetes termination message):

```json
{"kind": "CxbackupExportResult", "version": 1, "name": "nightly", "type": "contactHistory",
 "runId": "20260825T001500Z", "state": "Succeeded", "retryable": false, "reason": "", "error": "",
 "startTime": "2026-08-25T00:15:00Z", "completionTime": "2026-08-25T00:15:09Z",
 "range": {"from": "2026-08-24T00:00:00Z", "to": "2026-08-25T00:00:00Z"}, "users": [],
 "userRecords": {}, "records": 1234, "bytes": 81234, "store": "s3://bucket/exports/",
 "artifactCount": 1, "artifactsOmitted": 0,
 "artifacts": [{"name": "...part-0001.zip.p7m", "size": 81234, "sha256": "...", "part": 1,
                "last": true, "records": 1234, "createdAt": "...", "expiresAt": "..."}],
 "notes": ["user u2: no chat messages in the range [2026-08-24T00:00:00Z, 2026-08-25T00:00:00Z)"]}
```

On failure `reason` is the class name of the error (errors.py: SourceAuthError, StoreError, ...) and
`retryable` whether a later run may succeed; `exit_code` (not in the JSON) is the error's exit code.
An artifact's location is the store location joined with its name (`ExportResult.from_json` puts it
back). When everything does not fit, artifacts are left out from the end (`artifactsOmitted` says how
many; `artifactCount`, `records` and `bytes` stay exact), then notes are shortened and dropped
(`notesOmitted`), then the error message is shortened.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any, Literal

from cxbackup.api.exportjob import ArtifactRecord, ExportRunRecord
from cxbackup.core.errors import EXIT_FAILED, EXIT_OK
from cxbackup.export.errors import ExportError
from cxbackup.export.names import format_iso
from cxbackup.export.request import TimeRange
from cxbackup.export.store import ArtifactInfo

__all__ = ["RESULT_KIND", "TERMINATION_MESSAGE_LIMIT", "ExportResult", "RunState", "join_location"]

RESULT_KIND = "CxbackupExportResult"
TERMINATION_MESSAGE_LIMIT = 4096
RunState = Literal["Running", "Succeeded", "Failed"]


def join_location(store: str, name: str) -> str:
    """Where an artifact named `name` lives in the store at `store` (a path or s3://bucket/prefix/)."""
    if store.startswith("s3://") or not store:
        return store + name
    return str(PurePosixPath(store) / name)


@dataclass
class ExportResult:
    """One run: state, counts, artifacts (published only when it succeeded), notes, error."""

    name: str
    type: str
    run_id: str
    start_time: datetime
    users: tuple[str, ...] = ()
    store: str = ""
    state: RunState = "Running"
    range: TimeRange | None = None
    completion_time: datetime | None = None
    records: int = 0
    user_records: dict[str, int] = field(default_factory=dict)
    artifacts: list[ArtifactInfo] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str = ""
    reason: str = ""
    retryable: bool = False
    failure_exit_code: int = field(default=EXIT_FAILED, compare=False, repr=False)

    @property
    def succeeded(self) -> bool:
        return self.state == "Succeeded"

    @property
    def empty(self) -> bool:
        """Succeeded with nothing to export (no artifact); `notes` say why."""
        return self.succeeded and self.records == 0

    @property
    def bytes(self) -> int:
        return sum(a.size for a in self.artifacts)

    @property
    def exit_code(self) -> int:
        """What `cxbackup export run` exits with: 0 when it succeeded, else the error's exit code."""
        return EXIT_OK if self.succeeded else self.failure_exit_code

    @property
    def explanation(self) -> str:
        """One line for people: the error, or why the export is empty, or ''."""
        if self.state == "Failed":
            return self.error
        return "; ".join(self.notes) if self.empty else ""

    def fail(self, error: str, *, retryable: bool, reason: str, exit_code: int = EXIT_FAILED) -> None:
        """Mark the run Failed: the (redacted) message, whether a retry may help, the error class name
        and its exit code."""
        self.state = "Failed"
        self.error = error
        self.reason = reason
        self.retryable = retryable
        self.failure_exit_code = exit_code
        self.artifacts = []

    def fail_by(self, error: ExportError, message: str) -> None:
        """Mark the run Failed by `error`, with `message` (its text, redacted) and the error's class name,
        retryable and exit code."""
        self.fail(message, retryable=error.retryable, reason=type(error).__name__, exit_code=error.exit_code)

    # ------------------------------------------------------------------------------ status mapping

    def artifact_records(self) -> list[ArtifactRecord]:
        """status.artifacts entries for this run's artifacts."""
        return [a.to_record() for a in self.artifacts]

    def to_run_record(self, job_name: str) -> ExportRunRecord:
        """The status.history entry of this run."""
        return ExportRunRecord(
            job_name=job_name,
            start_time=self.start_time,
            completion_time=self.completion_time,
            state=self.state,
            records=self.records,
            artifacts=len(self.artifacts),
            error=self.error,
        )

    # ------------------------------------------------------------------------------ JSON

    def _doc(self) -> dict[str, Any]:
        return {
            "kind": RESULT_KIND,
            "version": 1,
            "name": self.name,
            "type": self.type,
            "runId": self.run_id,
            "state": self.state,
            "retryable": self.retryable,
            "reason": self.reason,
            "error": self.error,
            "startTime": format_iso(self.start_time),
            "completionTime": format_iso(self.completion_time) if self.completion_time else None,
            "range": self.range.to_json() if self.range else None,
            "users": list(self.users),
            "userRecords": dict(self.user_records),
            "records": self.records,
            "bytes": self.bytes,
            "store": self.store,
            "artifactCount": len(self.artifacts),
            "artifactsOmitted": 0,
            "artifacts": [
                {
                    "name": a.name,
                    "size": a.size,
                    "sha256": a.sha256,
                    "part": a.part,
                    "last": a.last,
                    "records": a.records,
                    "createdAt": format_iso(a.created_at),
                    "expiresAt": format_iso(a.expires_at),
                }
                for a in self.artifacts
            ],
            "notes": list(self.notes),
        }

    def to_json(self, max_bytes: int = TERMINATION_MESSAGE_LIMIT) -> str:
        """Compact JSON of at most `max_bytes` UTF-8 bytes (see the module docstring)."""
        doc = self._doc()

        def text() -> str:
            return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)

        def fits() -> bool:
            return len(text().encode("utf-8")) <= max_bytes

        while not fits() and doc["artifacts"]:
            doc["artifacts"].pop()
            doc["artifactsOmitted"] += 1
        if not fits():
            doc["notes"] = [n if len(n) <= 200 else n[:199] + "…" for n in doc["notes"]]
        while not fits() and doc["notes"]:
            doc["notes"].pop()
            doc["notesOmitted"] = doc.get("notesOmitted", 0) + 1
        for limit in (1000, 300, 80):
            if fits():
                break
            if len(doc["error"]) > limit:
                doc["error"] = doc["error"][: limit - 1] + "…"
        if not fits():  # pathological: ten 128-character user ids and their counts
            doc["userRecords"] = {}
            doc["users"] = doc["users"][:1]
        return text()

    @classmethod
    def from_json(cls, text: str) -> ExportResult:
        """Read a result back (e.g. a termination message); omitted artifacts and notes stay omitted."""
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("kind") != RESULT_KIND:
            raise ValueError("not a cxbackup export result")
        rng = doc.get("range")
        store = str(doc.get("store") or "")
        artifacts = [
            ArtifactInfo(
                name=a["name"],
                size=int(a["size"]),
                sha256=a["sha256"],
                created_at=datetime.fromisoformat(a["createdAt"]),
                expires_at=datetime.fromisoformat(a["expiresAt"]),
                location=join_location(store, a["name"]),
                export=str(doc.get("name", "")),
                type=str(doc.get("type", "")),
                run_id=str(doc.get("runId", "")),
                part=int(a.get("part", 0)),
                last=bool(a.get("last", False)),
                records=int(a.get("records", 0)),
            )
            for a in doc.get("artifacts", [])
        ]
        completion = doc.get("completionTime")
        return cls(
            name=str(doc.get("name", "")),
            type=str(doc.get("type", "")),
            run_id=str(doc.get("runId", "")),
            start_time=datetime.fromisoformat(doc["startTime"]),
            users=tuple(doc.get("users") or ()),
            store=store,
            state=doc.get("state", "Failed"),
            range=TimeRange(datetime.fromisoformat(rng["from"]), datetime.fromisoformat(rng["to"])) if rng else None,
            completion_time=datetime.fromisoformat(completion) if completion else None,
            records=int(doc.get("records", 0)),
            user_records={str(k): int(v) for k, v in (doc.get("userRecords") or {}).items()},
            artifacts=artifacts,
            notes=[str(n) for n in doc.get("notes", [])],
            error=str(doc.get("error", "")),
            reason=str(doc.get("reason", "")),
            retryable=bool(doc.get("retryable", False)),
        )

"""kopf handlers for ExportJob: one timer per resource reconciles its export runs and retention sweeps.

Each tick: account finished Jobs (run: history entry, artifacts, lastSuccessfulTime, Events, metrics;
sweep: artifacts marked expired, Event ArtifactsExpired), prune old Jobs, then start a sweep Job when
listed artifacts have expired, and an export run when one is due (created, spec changed, run-now
annotation, or the schedule), after validating the spec and checking the certificate, the credentials
Secret and the store. Decisions are in export_runs (pure); API access in kube; manifests in jobs.

The operator never reads key material: it checks that the certificate's Secret has the certificate key,
and the export pod gets only that key mounted (never tls.key).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import kopf
from pydantic import ValidationError

from cxbackup import metrics
from cxbackup.api.certificate import RecordingCertificate
from cxbackup.api.exportjob import ExportJob, ExportJobStatus
from cxbackup.controller import jobs as J
from cxbackup.controller import kube
from cxbackup.controller.backup_runs import iso
from cxbackup.controller.conditions import condition, set_condition
from cxbackup.controller.export_runs import (
    TRIGGER_ANNOTATION,
    ExportJobView,
    account_export,
    account_sweep,
    due_run,
    export_job_view,
    sweep_due,
    with_running,
)
from cxbackup.controller.registration import register_reconciler
from cxbackup.controller.schedule import ScheduleError, next_after, validate_schedule
from cxbackup.controller.settings import OperatorSettings, load_settings
from cxbackup.export.errors import ExportConfigError
from cxbackup.export.request import ExportRequest

__all__ = ["reconcile_export", "register"]

log = logging.getLogger(__name__)

KEEP_FINISHED_JOBS = 3
"""Finished run Jobs (and, separately, sweep Jobs) kept after accounting, for `kubectl logs`."""


class _Blocked(Exception):
    """A run cannot start: a referenced object is missing or the spec is unusable."""

    def __init__(self, reason: str, message: str, *, invalid: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.invalid = invalid


def _request(export: ExportJob) -> ExportRequest:
    try:
        if export.spec.schedule is not None:
            validate_schedule(export.spec.schedule, None)
        return ExportRequest.from_spec(export.spec, export.metadata["name"])
    except ScheduleError as exc:
        raise _Blocked("InvalidSchedule", f"spec.schedule: {exc}", invalid=True) from exc
    except ExportConfigError as exc:
        raise _Blocked("InvalidSpec", str(exc), invalid=True) from exc


def _certificate(export: ExportJob) -> J.CertificateSource:
    """The Secret key holding the certificate, or _Blocked(CertificateNotFound) naming the field."""
    ns: str = export.metadata["namespace"]
    ref = export.spec.certificate
    if ref.recording_certificate:
        field = "spec.certificate.recordingCertificate"
        body = kube.read_custom(ns, "recordingcertificates", ref.recording_certificate)
        if body is None:
            raise _Blocked("CertificateNotFound", f"{field}: RecordingCertificate {ns}/{ref.recording_certificate} "
                           "not found")  # fmt: skip
        rcert = RecordingCertificate.model_validate(body)
        if rcert.spec.secret_ref is not None:
            source = J.CertificateSource(rcert.spec.secret_ref.name, rcert.spec.secret_ref.certificate_key)
        else:
            source = J.CertificateSource(f"{ref.recording_certificate}-tls")
        what = f"{field}: RecordingCertificate {ns}/{ref.recording_certificate} has no certificate yet"
    else:
        field = "spec.certificate.secret"
        source = J.CertificateSource(ref.secret or "")
        what = f"{field}: the certificate Secret"
    keys = kube.secret_keys(ns, source.secret)
    if keys is None:
        raise _Blocked("CertificateNotFound", f"{what} (Secret {ns}/{source.secret} not found)")
    if source.key not in keys:
        raise _Blocked("CertificateNotFound", f"{what} (Secret {ns}/{source.secret} has no key {source.key})")
    return source


def _check_references(export: ExportJob) -> None:
    ns: str = export.metadata["namespace"]
    spec = export.spec
    wanted = [("spec.source.credentialsSecret", spec.source.credentials_secret, ["GWS_USERNAME", "GWS_PASSWORD"])]
    creds = spec.store.s3_credentials
    if spec.store.s3 is not None and creds is not None:
        wanted.append(("spec.store.s3Credentials", creds.name, [creds.access_key_id_key, creds.secret_access_key_key]))
    for field, name, keys in wanted:
        have = kube.secret_keys(ns, name)
        if have is None:
            raise _Blocked("SecretNotFound", f"{field}: Secret {ns}/{name} not found; create it with keys "
                           f"{', '.join(keys)}")  # fmt: skip
        missing = [k for k in keys if k not in have]
        if missing:
            raise _Blocked("SecretKeyMissing", f"{field}: Secret {ns}/{name} has no key {', '.join(missing)}")
    if spec.store.pvc is not None and not kube.pvc_exists(ns, spec.store.pvc):
        raise _Blocked("PVCNotFound", f"spec.store.pvc: PersistentVolumeClaim {ns}/{spec.store.pvc} not found")


def _event(body: Any, reason: str, message: str, *, warning: bool = False) -> None:
    kopf.event(body, type="Warning" if warning else "Normal", reason=reason, message=message)


class _Reconcile:
    """One reconciliation of one ExportJob: the status is built in `self.status` and patched at the end."""

    def __init__(self, body: Any, patch: Any, export: ExportJob, settings: OperatorSettings, now: dt.datetime):
        self.body = body
        self.patch = patch
        self.export = export
        self.settings = settings
        self.now = now
        self.ns: str = export.metadata["namespace"]
        self.name: str = export.metadata["name"]
        self.generation: int | None = export.metadata.get("generation")
        dump = export.status.model_dump(by_alias=True, mode="json", exclude_none=True) if export.status else {}
        self.conditions: list[dict[str, Any]] | None = dump.get("conditions")
        self.original_conditions = self.conditions

    def cond(self, ctype: str, status: str, reason: str, message: str) -> None:
        self.conditions = set_condition(self.conditions, ctype, status, reason, message, now=self.now,
                                        generation=self.generation)  # fmt: skip

    def set(self, key: str, value: Any) -> None:
        """Patch one status field and see it in `self.export` for the rest of this reconciliation."""
        status = self.export.status.model_dump(by_alias=True, mode="json") if self.export.status else {}
        if key in status and status[key] == value and key not in self.patch.status:
            return  # unchanged: no write
        self.patch.status[key] = value
        status[key] = value
        self.export = self.export.model_copy(update={"status": ExportJobStatus.model_validate(status)})

    def blocked(self, blocked: _Blocked) -> None:
        old = condition(self.conditions, "Ready")
        if old is None or old.get("message") != blocked.message:
            _event(self.body, blocked.reason, blocked.message, warning=True)
        self.cond("Ready", "False", blocked.reason, blocked.message)
        self.set("phase", "Invalid" if blocked.invalid else "Blocked")

    def account(self, views: list[ExportJobView]) -> None:
        """Finished Jobs into status (idempotent: status is written before the Job is annotated)."""
        status = self.export.status
        finished = {h.job_name for h in (status.history or []) if h.state != "Running"} if status else set()
        for view in views:
            if not view.finished or view.accounted:
                continue
            if view.task == "sweep":
                self._account_sweep(view)
            elif view.name not in finished:
                self._account_run(view)
            kube.patch_job_annotations(self.ns, view.name, {J.ANNOTATION_ACCOUNTED: "true"})

    def _account_run(self, view: ExportJobView) -> None:
        outcome = account_export(self.export, view, kube.job_termination_messages(self.ns, view.name), self.now)
        for key, value in outcome.status_patch.items():
            self.set(key, value)
        metrics.record_export_run(self.ns, self.name, result="succeeded" if outcome.succeeded else "failed",
                                  seconds=outcome.seconds)  # fmt: skip
        _event(self.body, outcome.event_reason, outcome.event_message, warning=not outcome.succeeded)
        if outcome.succeeded:
            self.cond("Ready", "True", "LastRunSucceeded", outcome.event_message)
            self.cond("Degraded", "False", "LastRunSucceeded", "")
        else:
            self.cond("Degraded", "True", "RunFailed", outcome.event_message)
        self.set("phase", "Succeeded" if outcome.succeeded else "Failed")

    def _account_sweep(self, view: ExportJobView) -> None:
        outcome = account_sweep(self.export, view, self.now)
        for key, value in outcome.status_patch.items():
            self.set(key, value)
        if outcome.succeeded:
            if outcome.expired:
                metrics.record_artifacts_expired(self.ns, self.name, len(outcome.expired))
                _event(self.body, outcome.event_reason, outcome.event_message)
        else:
            _event(self.body, outcome.event_reason, outcome.event_message, warning=True)
            self.cond("Degraded", "True", "SweepFailed", outcome.event_message)

    def prune(self, views: list[ExportJobView]) -> None:
        for task in ("run", "sweep"):
            done = [v for v in views if v.task == task and v.finished and v.accounted]
            for view in done[: max(len(done) - KEEP_FINISHED_JOBS, 0)]:
                kube.delete_job(self.ns, view.name)

    def start_sweep(self) -> None:
        run_id = J.run_id_for(self.now)
        job = J.build_export_sweep_job(self.export, run_id, self.settings.jobs, cutoff=self.now)
        if kube.create_object(job):
            _event(self.body, "SweepStarted", f"started {job['metadata']['name']}: artifacts listed in status have "
                   "reached their expiry")  # fmt: skip

    def start_run(self, slot: dt.datetime, reason: str, request: ExportRequest, cert: J.CertificateSource) -> None:
        run_id = J.run_id_for(slot)
        job = J.build_export_job(self.export, run_id, request.to_args(), cert, self.settings.jobs, run_start=self.now)
        job_name: str = job["metadata"]["name"]
        created = kube.create_object(job)
        self.set("history", with_running(self.export, job_name, self.now))
        self.set("lastRunGeneration", self.generation)
        trigger = (self.export.metadata.get("annotations") or {}).get(TRIGGER_ANNOTATION)
        if trigger:
            self.set("lastTrigger", trigger)
        self.set("phase", "Running")
        if created:
            what = f"users {', '.join(request.users)}" if request.users else "contact history"
            _event(self.body, "ExportStarted", f"started {job_name} ({reason}): {request.type} export of {what}")
        else:
            log.info("Job %s already exists; adopting it", job_name)
        self.cond("Running", "True", reason, f"run {job_name}")
        ready = condition(self.conditions, "Ready")
        if ready is None or ready.get("status") != "True":
            self.cond("Ready", "True", "RunStarted", "certificate, credentials and store resolved")

    def after_due(self) -> None:
        if self.export.spec.schedule:
            self.set("nextScheduleTime", iso(next_after(self.export.spec.schedule, None, self.now)))

    def update_metrics(self) -> None:
        status = self.export.status
        live = [a for a in (status.artifacts or [] if status else []) if not a.expired]
        state = metrics.ExportState(artifacts=len(live), artifact_bytes=sum(a.size for a in live))
        with metrics.STATE.lock:
            metrics.STATE.exports[(self.ns, self.name)] = state


def reconcile_export(body: Any, patch: Any, settings: OperatorSettings, now: dt.datetime | None = None) -> None:
    """One reconciliation of one ExportJob (called by the timer)."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        export = ExportJob.model_validate(dict(body))
    except ValidationError as exc:
        if (body.get("status") or {}).get("phase") != "Invalid":
            _event(body, "InvalidSpec", str(exc).splitlines()[0], warning=True)
        patch.status["phase"] = "Invalid"
        return
    r = _Reconcile(body, patch, export, settings, now)
    try:
        views = [export_job_view(j) for j in kube.list_jobs(r.ns, f"{J.LABEL_EXPORT}={r.name}")]
        views.sort(key=lambda v: v.run_start)
        r.account(views)
        r.prune(views)
        runs = [v for v in views if v.task == "run"]
        sweeps = [v for v in views if v.task == "sweep"]
        active = [v for v in runs if v.active]
        if sweep_due(r.export, sweeps, now):
            r.start_sweep()
        due = due_run(r.export, runs, now)
        if due is not None and not active:
            try:
                request = _request(r.export)
                cert = _certificate(r.export)
                _check_references(r.export)
            except _Blocked as blocked:
                r.blocked(blocked)
            else:
                r.start_run(due[0], due[1], request, cert)
                r.after_due()
        elif active:
            r.cond("Running", "True", "RunActive", f"run {active[-1].name}")
            r.set("phase", "Running")
        else:
            r.cond("Running", "False", "Idle", "no run active")
            phase = r.export.status.phase if r.export.status else None
            if export.spec.suspend:
                r.set("phase", "Suspended")
            elif not phase or phase in ("Running", "Suspended"):
                r.set("phase", "Pending")
    except kube.KubeError as exc:
        patch.status["conditions"] = r.conditions
        raise kopf.TemporaryError(str(exc), delay=30) from exc
    if r.conditions != r.original_conditions:
        patch.status["conditions"] = r.conditions
    r.update_metrics()
    if (export.status.observed_generation if export.status else None) != r.generation:
        patch.status["observedGeneration"] = r.generation


def register(settings: OperatorSettings | None = None) -> None:
    """Register the handlers with kopf (called once by the operator's startup)."""
    settings = settings or load_settings()

    register_reconciler("exportjobs", "exports", lambda body, patch: reconcile_export(body, patch, settings), settings)

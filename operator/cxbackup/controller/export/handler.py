"""ExportJob: the reconcile of one resource (its export runs and retention sweeps), and its kopf wiring.

Each tick: account finished Jobs (run: history entry, artifacts, lastSuccessfulTime, Events, metrics;
sweep: artifacts marked expired, Event ArtifactsExpired), prune old Jobs, then start a sweep Job when
listed artifacts have expired, and an export run when one is due (created, spec changed, run-now
annotation, or the schedule), after validating the spec and checking the certificate, the credentials
Secret and the store (and, for subjectAccess, the RecordingBackup and its target). Decisions are in
`decisions` (pure), Job manifests in `manifests`; every API call goes through the injected `Cluster`, every
Event through the injected `Emit`, and the clock is `now`.

The operator never reads key material: it checks that the certificate's Secret has the certificate key,
and the export pod gets only that key mounted (never tls.key). A subjectAccess run reads a RecordingBackup
of the ExportJob's own namespace only, through a ConfigMap describing its target (created before the Job);
an S3 target's credentials reach the pod only as secretKeyRefs.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from cxbackup import metrics
from cxbackup.api.certificate import RecordingCertificate, certificate_readiness
from cxbackup.api.common import CERTIFICATES, EXPORTS
from cxbackup.api.exportjob import ExportJob, ExportJobStatus
from cxbackup.api.recordingbackup import RecordingBackup
from cxbackup.api.status import ConditionType, Phase, Reason
from cxbackup.controller.backup.referenced import ReferencedBackup, referenced_backup
from cxbackup.controller.certificate.decisions import keyring_secret_name
from cxbackup.controller.cluster import Cluster, ClusterError, termination_messages
from cxbackup.controller.conditions import condition, set_condition
from cxbackup.controller.events import Emit, EventSpec
from cxbackup.controller.export.consent import decide_decryption
from cxbackup.controller.export.decisions import (
    TRIGGER_ANNOTATION,
    ExportJobView,
    account_export,
    account_sweep,
    due_run,
    export_job_view,
    sweep_due,
    with_running,
)
from cxbackup.controller.export.manifests import (
    LABEL_EXPORT,
    CertificateSource,
    Decryption,
    SubjectAccessSources,
    backup_configmap_name,
    build_backup_configmap,
    build_export_job,
    build_export_sweep_job,
    subject_access_args,
)
from cxbackup.controller.jobstate import ANNOTATION_ACCOUNTED
from cxbackup.controller.manifests import pod_settings_problem, run_id_for
from cxbackup.controller.references import (
    Blocked,
    EndpointPolicy,
    SecretNeed,
    endpoint_problem,
    gather_secrets,
    pvc_problem,
    secret_problem,
)
from cxbackup.controller.registration import Interrupted, register_reconciler, validated
from cxbackup.controller.schedule import ScheduleError, next_after, validate_schedule
from cxbackup.controller.settings import OperatorSettings
from cxbackup.core.times import iso
from cxbackup.export.errors import ExportConfigError
from cxbackup.export.request import ExportRequest

__all__ = ["reconcile_export", "register"]

log = logging.getLogger(__name__)

KEEP_FINISHED_JOBS = 3
"""Finished run Jobs (and, separately, sweep Jobs) kept after accounting, for `kubectl logs`."""


@dataclass(frozen=True)
class _SubjectAccessRun:
    """What start_run needs of a subjectAccess ExportJob (the subject itself is only in its Secret)."""

    args: list[str]
    type: str = "subjectAccess"
    users: tuple[str, ...] = ()

    def to_args(self) -> list[str]:
        return self.args


def _request(export: ExportJob) -> ExportRequest | _SubjectAccessRun:
    try:
        if export.spec.schedule is not None:
            validate_schedule(export.spec.schedule, None)
        if export.spec.type == "subjectAccess":
            return _SubjectAccessRun(subject_access_args(export))
        return ExportRequest.from_spec(export.spec, export.metadata["name"])
    except ScheduleError as exc:
        raise Blocked(Reason.INVALID_SCHEDULE, f"spec.schedule: {exc}", invalid=True) from exc
    except ExportConfigError as exc:
        raise Blocked(Reason.INVALID_SPEC, str(exc), invalid=True) from exc


def _certificate(cluster: Cluster, export: ExportJob) -> CertificateSource:
    """The Secret key holding the certificate, or Blocked(CertificateNotFound) naming the field."""
    ns: str = export.metadata["namespace"]
    ref = export.spec.certificate
    if ref.recording_certificate:
        field = "spec.certificate.recordingCertificate"
        body = cluster.read_custom(ns, CERTIFICATES, ref.recording_certificate)
        if body is None:
            raise Blocked(
                Reason.CERTIFICATE_NOT_FOUND,
                f"{field}: RecordingCertificate {ns}/{ref.recording_certificate} not found",
            )
        rcert = RecordingCertificate.model_validate(body)
        readiness = certificate_readiness(body.get("status"), (body.get("metadata") or {}).get("generation"))
        if not readiness.ready:
            raise Blocked(
                Reason.CERTIFICATE_NOT_READY,
                f"{field}: RecordingCertificate {ns}/{ref.recording_certificate} is not Ready ({readiness.reason}: "
                f"{readiness.message}); the export starts once it is",
            )
        if rcert.spec.secret_ref is not None:
            source = CertificateSource(rcert.spec.secret_ref.name, rcert.spec.secret_ref.certificate_key)
        else:
            source = CertificateSource(f"{ref.recording_certificate}-tls")
        what = f"{field}: RecordingCertificate {ns}/{ref.recording_certificate} has no certificate yet"
    else:
        field = "spec.certificate.secret"
        source = CertificateSource(ref.secret or "")
        what = f"{field}: the certificate Secret"
    keys = cluster.secret_keys(ns, source.secret)
    if keys is None:
        raise Blocked(Reason.CERTIFICATE_NOT_FOUND, f"{what} (Secret {ns}/{source.secret} not found)")
    if source.key not in keys:
        raise Blocked(Reason.CERTIFICATE_NOT_FOUND, f"{what} (Secret {ns}/{source.secret} has no key {source.key})")
    return source


BACKUP_FIELD = "spec.backup.recordingBackup"


def _backup(cluster: Cluster, export: ExportJob, policy: EndpointPolicy) -> ReferencedBackup | None:
    """The RecordingBackup a subjectAccess export reads, its target checked (None for other types), or
    Blocked naming the field. Only a RecordingBackup of the export's own namespace is read."""
    spec = export.spec
    if spec.type != "subjectAccess":
        return None
    assert spec.backup is not None  # the CRD's rules
    return referenced_backup(cluster, export.metadata["namespace"], spec.backup.recording_backup, BACKUP_FIELD, policy)


def _shared_credentials_problem(export: ExportJob, backup: RecordingBackup) -> Blocked | None:
    """An S3 store and an S3 backup target reach the export pod through the same TARGET_AWS_* variables, so
    they must name the same Secret (and keys); otherwise Blocked(InvalidSpec) naming both fields."""
    store, target = export.spec.store, backup.spec.target.s3
    if store.s3 is None or target is None:
        return None
    mine, theirs = store.s3_credentials, target.credentials
    if mine is not None and (mine.name, mine.access_key_id_key, mine.secret_access_key_key) == (
        theirs.name, theirs.access_key_id_key, theirs.secret_access_key_key,
    ):  # fmt: skip
        return None
    ns: str = export.metadata["namespace"]
    named = f"Secret {mine.name}" if mine is not None else "none"
    return Blocked(
        Reason.INVALID_SPEC,
        f"spec.store.s3Credentials ({named}) and the RecordingBackup {ns}/{backup.metadata['name']}'s "
        f"spec.target.s3.credentials (Secret {theirs.name}) differ, but the export pod reads the backup bucket "
        f"and writes the store bucket with one set of credentials: set spec.store.s3Credentials.name to "
        f"{theirs.name} (one Secret allowed to read the backup bucket and write the store bucket), or keep the "
        "artifacts in a PVC (spec.store.pvc)",
        invalid=True,
    )


def _endpoints(export: ExportJob) -> list[tuple[str, str | None, bool]]:
    """(field, URL, whether it is the vendor's) of every endpoint of its own the export pods will talk to."""
    source = export.spec.source
    return [
        ("spec.source.apiUriPrefix", source.api_uri_prefix if source else None, True),
        ("spec.store.s3EndpointUrl", export.spec.store.s3_endpoint_url, False),
    ]


def _check_references(
    cluster: Cluster, export: ExportJob, policy: EndpointPolicy, backup: RecordingBackup | None
) -> list[str]:
    """Check the endpoints and that an S3 store and an S3 backup target (checked by `_backup`) share their
    credentials, then gather the credentials Secrets and the store's PVC; raise the first problem as Blocked.
    Returns the fields that use plain HTTP (allowed by the installer)."""
    ns: str = export.metadata["namespace"]
    spec = export.spec
    for field, url, vendor in _endpoints(export):
        if (problem := endpoint_problem(field, url, policy, vendor=vendor)) is not None:
            raise problem
    if backup is not None and (problem := _shared_credentials_problem(export, backup)) is not None:
        raise problem
    needs = []
    if spec.source is not None:
        needs.append(
            SecretNeed(
                "spec.source.credentialsSecret", spec.source.credentials_secret, ("GWS_USERNAME", "GWS_PASSWORD")
            )
        )
    if spec.subject is not None:
        needs.append(SecretNeed("spec.subject.secret", spec.subject.secret, (spec.subject.key,)))
    creds = spec.store.s3_credentials
    if spec.store.s3 is not None and creds is not None:
        needs.append(
            SecretNeed("spec.store.s3Credentials", creds.name, (creds.access_key_id_key, creds.secret_access_key_key))
        )
    problem = secret_problem(ns, needs, gather_secrets(cluster, ns, needs))
    if problem is None and spec.store.pvc is not None:
        problem = pvc_problem(
            "spec.store.pvc", ns, spec.store.pvc, cluster.pvc_access_modes(ns, spec.store.pvc) is not None
        )
    if problem is not None:
        raise problem
    return [field for field, url, _ in _endpoints(export) if url and url.startswith("http://")]


def _decryption(cluster: Cluster, export: ExportJob, now: dt.datetime) -> Decryption | None:
    """spec.decryptMedia consented to (None without it), or Blocked naming the field: reads the
    RecordingCertificate, its keyring Secret, and the subject and certificate Secrets, and leaves the decision
    to `consent.decide_decryption`. Mounting a keyring is the key owner's decision for this very ExportJob."""
    ref = export.spec.decrypt_media
    if ref is None:
        return None
    ns: str = export.metadata["namespace"]
    body = cluster.read_custom(ns, CERTIFICATES, ref.recording_certificate)
    keyring = None
    if body is not None:
        try:
            keyring = cluster.read_secret(ns, keyring_secret_name(RecordingCertificate.model_validate(body)))
        except ValidationError:
            keyring = None  # decide_decryption reports the certificate as not valid
    subject = export.spec.subject
    certificate = export.spec.certificate.secret
    return decide_decryption(
        export,
        body,
        keyring,
        cluster.read_secret(ns, subject.secret) if subject is not None else None,
        cluster.read_secret(ns, certificate) if certificate is not None else None,
        now,
    )


def _subject_access(
    export: ExportJob, found: ReferencedBackup | None, decryption: Decryption | None
) -> SubjectAccessSources | None:
    """The subject's Secret key, the backup (and its target PVC's access modes, which place the pod) and the
    consented decryption (decryptMedia) of a subjectAccess export (None for other types)."""
    subject = export.spec.subject
    if found is None or subject is None:
        return None
    source = CertificateSource(subject.secret, subject.key)
    return SubjectAccessSources(source, found.backup, decryption, target_access_modes=found.access_modes)


class _Reconcile:
    """One reconciliation of one ExportJob: the status is built in `self.status` and patched at the end."""

    def __init__(
        self,
        export: ExportJob,
        changes: dict[str, Any],
        cluster: Cluster,
        emit: Emit,
        settings: OperatorSettings,
        now: dt.datetime,
    ) -> None:
        self.changes = changes
        self.cluster = cluster
        self.emit = emit
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
        self.conditions = set_condition(
            self.conditions, ctype, status, reason, message, now=self.now, generation=self.generation
        )

    def set(self, key: str, value: Any) -> None:
        """Patch one status field and see it in `self.export` for the rest of this reconciliation."""
        status = self.export.status.model_dump(by_alias=True, mode="json") if self.export.status else {}
        if key in status and status[key] == value and key not in self.changes:
            return  # unchanged: no write
        self.changes[key] = value
        status[key] = value
        self.export = self.export.model_copy(update={"status": ExportJobStatus.model_validate(status)})

    def blocked(self, blocked: Blocked) -> None:
        self.conditions = blocked.ready_false(self.conditions, self.emit, now=self.now, generation=self.generation)
        self.set("phase", blocked.phase)

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
            self.cluster.patch_job_annotations(self.ns, view.name, {ANNOTATION_ACCOUNTED: "true"})

    def _account_run(self, view: ExportJobView) -> None:
        outcome = account_export(
            self.export, view, termination_messages(self.cluster.job_pods(self.ns, view.name)), self.now
        )
        for key, value in outcome.status_patch.items():
            self.set(key, value)
        metrics.record_export_run(
            self.ns, self.name, result="succeeded" if outcome.succeeded else "failed", seconds=outcome.seconds
        )
        self.emit(EventSpec(not outcome.succeeded, outcome.event_reason, outcome.event_message))
        if outcome.succeeded:
            self.cond(ConditionType.READY, "True", Reason.LAST_RUN_SUCCEEDED, outcome.event_message)
            self.cond(ConditionType.DEGRADED, "False", Reason.LAST_RUN_SUCCEEDED, "")
        else:
            self.cond(ConditionType.DEGRADED, "True", Reason.RUN_FAILED, outcome.event_message)
        self.set("phase", Phase.SUCCEEDED if outcome.succeeded else Phase.FAILED)

    def _account_sweep(self, view: ExportJobView) -> None:
        outcome = account_sweep(self.export, view, self.now)
        for key, value in outcome.status_patch.items():
            self.set(key, value)
        if outcome.succeeded:
            if outcome.expired:
                metrics.record_artifacts_expired(self.ns, self.name, len(outcome.expired))
                self.emit(EventSpec(False, outcome.event_reason, outcome.event_message))
        else:
            self.emit(EventSpec(True, outcome.event_reason, outcome.event_message))
            self.cond(ConditionType.DEGRADED, "True", Reason.SWEEP_FAILED, outcome.event_message)

    def prune(self, views: list[ExportJobView]) -> None:
        for task in ("run", "sweep"):
            done = [v for v in views if v.task == task and v.finished and v.accounted]
            for view in done[: max(len(done) - KEEP_FINISHED_JOBS, 0)]:
                self.cluster.delete_job(self.ns, view.name)
                if task == "run":  # a subjectAccess run's backup ConfigMap (gone already, or never made: no-op)
                    self.cluster.delete_configmap(self.ns, backup_configmap_name(view.name))

    def start_sweep(self) -> None:
        if (pod_problem := pod_settings_problem(self.export.spec.pod, self.settings.jobs)) is not None:
            self.blocked(pod_problem)  # the sweep's pod has the ExportJob's own spec.pod
            return
        run_id = run_id_for(self.now)
        job = build_export_sweep_job(self.export, run_id, self.settings.jobs, cutoff=self.now)
        if self.cluster.create_object(job):
            self.emit(
                EventSpec(
                    False,
                    Reason.SWEEP_STARTED,
                    f"started {job['metadata']['name']}: artifacts listed in status have reached their expiry",
                )
            )

    def start_run(
        self,
        slot: dt.datetime,
        reason: str,
        request: ExportRequest | _SubjectAccessRun,
        cert: CertificateSource,
        subject_access: SubjectAccessSources | None = None,
    ) -> None:
        run_id = run_id_for(slot)
        if subject_access is not None:
            # before the Job, whose pod mounts it; one that exists already (a restarted operator) is adopted
            self.cluster.create_object(build_backup_configmap(self.export, run_id, subject_access.backup))
        job = build_export_job(
            self.export, run_id, request.to_args(), cert, self.settings.jobs, run_start=self.now,
            subject_access=subject_access,
        )  # fmt: skip
        job_name: str = job["metadata"]["name"]
        created = self.cluster.create_object(job)
        self.set("history", with_running(self.export, job_name, self.now))
        self.set("lastRunGeneration", self.generation)
        trigger = (self.export.metadata.get("annotations") or {}).get(TRIGGER_ANNOTATION)
        if trigger:
            self.set("lastTrigger", trigger)
        self.set("phase", Phase.RUNNING)
        if created:
            what = (
                f"users {', '.join(request.users)}"
                if request.users
                else "one person's backed-up recordings"
                if request.type == "subjectAccess"
                else "contact history"
            )
            self.emit(
                EventSpec(
                    False, Reason.EXPORT_STARTED, f"started {job_name} ({reason}): {request.type} export of {what}"
                )
            )
        else:
            log.info("Job %s already exists; adopting it", job_name)
        self.cond(ConditionType.RUNNING, "True", reason, f"run {job_name}")
        ready = condition(self.conditions, ConditionType.READY)
        if ready is None or ready.get("status") != "True":
            self.cond(ConditionType.READY, "True", Reason.RUN_STARTED, "certificate, credentials and store resolved")

    def after_due(self) -> None:
        if self.export.spec.schedule:
            self.set("nextScheduleTime", iso(next_after(self.export.spec.schedule, None, self.now)))

    def update_metrics(self, states: metrics.ObjectStates) -> None:
        status = self.export.status
        live = [a for a in (status.artifacts or [] if status else []) if not a.expired]
        state = metrics.ExportState(artifacts=len(live), artifact_bytes=sum(a.size for a in live))
        with states.lock:
            states.exports[(self.ns, self.name)] = state


def reconcile_export(
    body: Mapping[str, Any],
    *,
    cluster: Cluster,
    emit: Emit,
    now: dt.datetime,
    settings: OperatorSettings,
    states: metrics.ObjectStates = metrics.STATE,
) -> dict[str, Any]:
    """One reconciliation of one ExportJob; returns the status fields to write."""
    export = validated(ExportJob, body, emit)
    if export is None:
        return {"phase": Phase.INVALID}
    changes: dict[str, Any] = {}
    r = _Reconcile(export, changes, cluster, emit, settings, now)
    metrics.initialize_export(r.ns, r.name)
    try:
        views = [export_job_view(j) for j in cluster.list_jobs(r.ns, f"{LABEL_EXPORT}={r.name}")]
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
                if (pod_problem := pod_settings_problem(r.export.spec.pod, settings.jobs)) is not None:
                    raise pod_problem
                cert = _certificate(cluster, r.export)
                found = _backup(cluster, r.export, settings.endpoints)
                backup = found.backup if found is not None else None
                plain_http = _check_references(cluster, r.export, settings.endpoints, backup)
                plain_http += found.plain_http if found is not None else []
                subject_access = _subject_access(r.export, found, _decryption(cluster, r.export, now))
            except Blocked as blocked:
                r.blocked(blocked)
            else:
                if plain_http:
                    emit(
                        EventSpec(
                            True,
                            Reason.PLAIN_HTTP_ALLOWED,
                            f"{', '.join(plain_http)} use plain HTTP "
                            "(allowed by the installer): credentials and customer data cross the network "
                            "unencrypted",
                        )
                    )
                r.start_run(due[0], due[1], request, cert, subject_access)
                r.after_due()
        elif active:
            r.cond(ConditionType.RUNNING, "True", Reason.RUN_ACTIVE, f"run {active[-1].name}")
            r.set("phase", Phase.RUNNING)
        else:
            r.cond(ConditionType.RUNNING, "False", Reason.IDLE, "no run active")
            phase = r.export.status.phase if r.export.status else None
            if export.spec.suspend:
                r.set("phase", Phase.SUSPENDED)
            elif not phase or phase in (Phase.RUNNING, Phase.SUSPENDED):
                r.set("phase", Phase.PENDING)
    except ClusterError as exc:
        changes["conditions"] = r.conditions
        raise Interrupted(changes, exc) from exc
    if r.conditions != r.original_conditions:
        changes["conditions"] = r.conditions
    r.update_metrics(states)
    if (export.status.observed_generation if export.status else None) != r.generation:
        changes["observedGeneration"] = r.generation
    return changes


def register(settings: OperatorSettings, cluster: Cluster) -> None:
    """Register the handlers with kopf (called once by the operator's startup)."""
    register_reconciler(EXPORTS, "exports", reconcile_export, settings, cluster)

"""RecordingErasure: the reconcile of one erasure request, and its kopf wiring.

A run is due when the resource is created, when its spec changes (a dry run, then `execute: true`) and
when the run-now annotation gets a new value (a retry). An erasure runs only after a dry run of the same
request: a finished dry run's Job (started by this very object: its owner's uid) becomes `status.plan`,
with the digest of the request it ran (`manifests.request_digest`) and the generation at which its result
reached status; `execute: true` starts a run only when the current request has that digest and was set
at a later generation (after the result could be read). Otherwise nothing runs (`DryRunRequired`, phase
Invalid): the spec is frozen once execute is true, so the way on is a new RecordingErasure.

Before starting a run the reconciler checks the RecordingBackup (same namespace only), its target (PVC,
or S3 credentials and endpoint) and the subject's Secret, and waits while a run of that backup is active
(the erasure takes every shard's lock). The run is one Job (`manifests`); its pod writes its report as
the termination message, which becomes `status.result`. Every API call goes through the injected
`Cluster`, every Event through `Emit`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from cxbackup import metrics
from cxbackup.api.common import ERASURES
from cxbackup.api.erasure import ErasureResult, RecordingErasure
from cxbackup.api.status import ConditionType, Phase, Reason
from cxbackup.controller.backup.manifests import LABEL_BACKUP
from cxbackup.controller.backup.referenced import ReferencedBackup, referenced_backup
from cxbackup.controller.cluster import Cluster, ClusterError, termination_messages
from cxbackup.controller.conditions import condition, set_condition
from cxbackup.controller.erasure.manifests import (
    ANNOTATION_DIGEST,
    ANNOTATION_MODE,
    ANNOTATION_SUBJECT_VERSION,
    LABEL_ERASURE,
    MODE_DRY_RUN,
    build_erasure_configmap,
    build_erasure_job,
    request_digest,
)
from cxbackup.controller.events import Emit, EventSpec
from cxbackup.controller.jobstate import ANNOTATION_ACCOUNTED, JobState, pod_problems, read_job_state
from cxbackup.controller.manifests import pod_settings_problem, run_id_for
from cxbackup.controller.references import Blocked, SecretNeed
from cxbackup.controller.registration import Interrupted, register_reconciler, validated
from cxbackup.controller.schedule import RUN_NOW_ANNOTATION, run_due
from cxbackup.controller.settings import OperatorSettings
from cxbackup.core.times import iso

__all__ = ["reconcile_erasure", "register"]

log = logging.getLogger(__name__)

KEEP_FINISHED_JOBS = 3


class _Reconcile:
    """One reconciliation of one RecordingErasure; the status changes are collected in `changes`."""

    def __init__(self, erasure: RecordingErasure, cluster: Cluster, emit: Emit, now: dt.datetime) -> None:
        self.erasure = erasure
        self.cluster = cluster
        self.emit = emit
        self.now = now
        self.ns: str = erasure.metadata["namespace"]
        self.name: str = erasure.metadata["name"]
        self.generation: int | None = erasure.metadata.get("generation")
        self.status = erasure.status.model_dump(by_alias=True, mode="json", exclude_none=True) if erasure.status else {}
        self.changes: dict[str, Any] = {}
        self.conditions: list[dict[str, Any]] | None = self.status.get("conditions")

    def set(self, key: str, value: Any) -> None:
        if self.status.get(key) != value or key in self.changes:
            self.changes[key] = value
            self.status[key] = value

    def cond(self, ctype: str, status: str, reason: str, message: str) -> None:
        self.conditions = set_condition(
            self.conditions, ctype, status, reason, message, now=self.now, generation=self.generation
        )

    def blocked(self, blocked: Blocked) -> None:
        self.conditions = blocked.ready_false(self.conditions, self.emit, now=self.now, generation=self.generation)
        self.set("phase", blocked.phase)

    def account(self, job: JobState, annotations: Mapping[str, str]) -> None:
        """A finished run into status (idempotent: status is written before the Job is annotated). A dry run
        the operator started as one becomes `plan`: the request it was of, and this generation."""
        pods = self.cluster.job_pods(self.ns, job.name)
        result = _result(termination_messages(pods))
        self.set("completionTime", iso(job.completion_time or self.now))
        backup = self.erasure.spec.recording_backup
        if result is not None:
            self.set("result", result.model_dump(by_alias=True, mode="json", exclude_none=True))
            if not result.dry_run:
                metrics.record_erasure(self.ns, backup, erased=result.erased, held=result.held, failed=result.failed)
        if job.succeeded and result is not None:
            self.set("error", "")
            held = f", {result.held} kept under legal hold" if result.held else ""
            started_as_dry_run = annotations.get(ANNOTATION_MODE) == MODE_DRY_RUN
            if result.dry_run and started_as_dry_run and annotations.get(ANNOTATION_DIGEST):
                plan = {
                    "digest": annotations[ANNOTATION_DIGEST],
                    "subjectVersion": annotations.get(ANNOTATION_SUBJECT_VERSION, ""),
                    "jobName": job.name,
                    "completionTime": iso(job.completion_time or self.now),
                    "observedGeneration": self.generation or 0,
                    "toErase": result.to_erase,
                    "held": result.held,
                }
                self.set("plan", plan)
            if result.dry_run:
                what = f"{result.to_erase} recording(s) would be erased{held}"
                message = (
                    f"dry run: {what}; set spec.execute: true to erase them"
                    if result.to_erase
                    else (f"dry run: nothing to erase{held}. {result.explanation}".strip())
                )
                self.set("phase", Phase.PLANNED)
                self.emit(EventSpec(False, Reason.ERASURE_PLANNED, message))
            else:
                message = f"erased {result.erased} recording(s) from RecordingBackup {backup}'s target{held}"
                message += f"; recorded in {result.ledger}" if result.ledger else f". {result.explanation}".rstrip()
                self.set("phase", Phase.SUCCEEDED)
                self.emit(EventSpec(False, Reason.ERASURE_SUCCEEDED, message))
            return
        if result is not None and result.failed:
            error = f"{result.failed} recording(s) could not be erased (listed in status.result); the rest are " \
                    f"erased. Retry with: kubectl annotate rerase {self.name} {RUN_NOW_ANNOTATION}=\"$(date +%s)\" " \
                    "--overwrite"  # fmt: skip
        else:
            texts = [m.strip() for m in termination_messages(pods) if m.strip()]
            causes = [str(p) for p in pod_problems(pods)]
            error = (texts[0][-600:] if texts else "") or "; ".join(causes) or job.failure_message or "the run failed"
        self.set("error", error)
        self.set("phase", Phase.FAILED)
        self.emit(EventSpec(True, Reason.ERASURE_FAILED, f"{job.name}: {error}"))

    def start(
        self,
        found: ReferencedBackup,
        slot: dt.datetime,
        reason: str,
        settings: OperatorSettings,
        request: tuple[str, str],
    ) -> None:
        """Start a run of the request `(digest, subject Secret resourceVersion)`."""
        run_id = run_id_for(slot)
        backup = found.backup
        self.cluster.create_object(build_erasure_configmap(self.erasure, backup, run_id))
        job = build_erasure_job(self.erasure, backup, run_id, settings.jobs, run_start=self.now, digest=request[0],
                                subject_version=request[1], access_modes=found.access_modes)  # fmt: skip
        job_name: str = job["metadata"]["name"]
        if self.cluster.create_object(job):
            what = "erasure" if self.erasure.spec.execute else "dry run"
            self.emit(EventSpec(False, Reason.ERASURE_STARTED, f"started {job_name} ({reason}): {what} on "
                                f"RecordingBackup {backup.metadata['name']}'s target"))  # fmt: skip
        else:
            log.info("Job %s already exists; adopting it", job_name)
        self.set("jobName", job_name)
        self.set("startTime", iso(self.now))
        self.set("lastRunGeneration", self.generation)
        trigger = (self.erasure.metadata.get("annotations") or {}).get(RUN_NOW_ANNOTATION)
        if trigger:
            self.set("lastTrigger", trigger)
        self.set("phase", Phase.RUNNING)
        self.cond(ConditionType.READY, "True", Reason.RUN_STARTED, "backup, target and subject resolved")
        self.cond(ConditionType.RUNNING, "True", reason, f"run {job_name}")


def _result(messages: list[str]) -> ErasureResult | None:
    """The newest pod's report, when it wrote one."""
    for text in messages:
        try:
            return ErasureResult.model_validate_json(text)
        except ValidationError:
            continue
    return None


def reconcile_erasure(
    body: Mapping[str, Any],
    *,
    cluster: Cluster,
    emit: Emit,
    now: dt.datetime,
    settings: OperatorSettings,
    states: metrics.ObjectStates | None = None,
) -> dict[str, Any]:
    """One reconciliation of one RecordingErasure; returns the status fields to write. (An erasure has
    no scrape-time state: `states` is accepted like every reconciler's.)"""
    erasure = validated(RecordingErasure, body, emit)
    if erasure is None:
        return {"phase": Phase.INVALID}
    r = _Reconcile(erasure, cluster, emit, now)
    original = r.conditions
    try:
        # only this object's own Jobs: a deleted erasure's Jobs, which the garbage collector has not removed yet,
        # are not runs of one created again under its name
        uid = erasure.metadata.get("uid")
        raw = [j for j in cluster.list_jobs(r.ns, f"{LABEL_ERASURE}={r.name}") if _owned_by(j, uid)]
        annotations = {str(j["metadata"]["name"]): dict(j["metadata"].get("annotations") or {}) for j in raw}
        jobs = sorted((read_job_state(j) for j in raw), key=lambda j: j.run_start)
        for job in jobs:
            if job.finished and not job.accounted:
                r.account(job, annotations.get(job.name, {}))
                cluster.patch_job_annotations(r.ns, job.name, {ANNOTATION_ACCOUNTED: "true"})
        done = [j for j in jobs if j.finished]
        for job in done[: max(len(done) - KEEP_FINISHED_JOBS, 0)]:
            cluster.delete_job(r.ns, job.name)
        active = [j for j in jobs if j.active]
        status = erasure.status
        due = run_due(
            metadata=erasure.metadata,
            suspend=False,
            schedule=None,
            time_zone=None,
            last_trigger=status.last_trigger if status else None,
            last_run_generation=status.last_run_generation if status else None,
            next_schedule_time=None,
            job_starts=[j.run_start for j in jobs],
            now=now,
        )
        if active:
            r.cond(ConditionType.RUNNING, "True", Reason.RUN_ACTIVE, f"run {active[-1].name}")
            r.set("phase", Phase.RUNNING)
        elif due is not None:
            _start_if_ready(r, due, settings)
        else:
            r.cond(ConditionType.RUNNING, "False", Reason.IDLE, "no run active")
    except ClusterError as exc:
        r.changes["conditions"] = r.conditions
        raise Interrupted(r.changes, exc) from exc
    if r.conditions != original:
        r.changes["conditions"] = r.conditions
    if (erasure.status.observed_generation if erasure.status else None) != r.generation:
        r.changes["observedGeneration"] = r.generation
    return r.changes


def _owned_by(job: Mapping[str, Any], uid: str | None) -> bool:
    refs = (job.get("metadata") or {}).get("ownerReferences") or []
    return uid is None or any(ref.get("uid") == uid for ref in refs)


_RECREATE = (
    "Nothing was erased. Delete this RecordingErasure and create it again with execute: false, read its dry run "
    "in status.result once its phase is Planned, then set execute: true"
)


def _execute_problem(r: _Reconcile, digest: str, subject_version: str) -> str | None:
    """Why `execute: true` may not run now (None when status.plan is a dry run of this very request, whose
    result was in status before execute was set)."""
    plan = r.status.get("plan") or {}
    if plan.get("digest") != digest:
        old_version = str(plan.get("subjectVersion", ""))
        if plan and plan.get("digest") == request_digest(r.erasure, old_version):
            secret = r.erasure.spec.subject.secret
            why = f"the subject's Secret {secret} changed after the dry run (resourceVersion {old_version}, now " \
                  f"{subject_version})"  # fmt: skip
        elif plan:
            why = f"the last completed dry run ({plan.get('jobName') or 'status.plan'}) was of another request"
        else:
            why = "no dry run of this request has completed (status.plan)"
        return f"spec.execute is true but {why}: an erasure runs only after a completed dry run of the same " \
               f"request. {_RECREATE}"  # fmt: skip
    generation = int(plan.get("observedGeneration") or 0)
    if r.generation is None or generation >= r.generation:
        return f"spec.execute was set before the dry run's result was in status (it was written at generation " \
               f"{generation}, with execute already true), so nobody could have read it. {_RECREATE}"  # fmt: skip
    return None


def _start_if_ready(r: _Reconcile, due: tuple[dt.datetime, str], settings: OperatorSettings) -> None:
    spec = r.erasure.spec
    try:
        subject = SecretNeed("spec.subject.secret", spec.subject.secret, (spec.subject.key,))
        found = referenced_backup(r.cluster, r.ns, spec.recording_backup, "spec.recordingBackup",
                                  settings.endpoints, (subject,))  # fmt: skip
        if (pod_problem := pod_settings_problem(spec.pod, settings.jobs)) is not None:
            raise pod_problem  # before the ConfigMap: nothing is created for a pod over the caps
    except Blocked as blocked:
        r.blocked(blocked)
        return
    secret = r.cluster.read_secret(r.ns, spec.subject.secret)
    version = secret.resource_version if secret is not None else ""
    digest = request_digest(r.erasure, version)
    if spec.execute and (problem := _execute_problem(r, digest, version)) is not None:
        r.blocked(Blocked(Reason.DRY_RUN_REQUIRED, problem, invalid=True))
        r.cond(ConditionType.RUNNING, "False", Reason.DRY_RUN_REQUIRED, "no run: execute needs a dry run first")
        return
    for field in found.plain_http:
        r.emit(EventSpec(True, Reason.PLAIN_HTTP_ALLOWED, f"{field} uses plain HTTP (allowed by the installer): "
                         "credentials and recordings cross the network unencrypted"))  # fmt: skip
    runs = [read_job_state(j) for j in r.cluster.list_jobs(r.ns, f"{LABEL_BACKUP}={spec.recording_backup}")]
    busy = [j.name for j in runs if j.active]
    if busy:
        message = f"waiting for run {busy[-1]} of RecordingBackup {spec.recording_backup} to finish (an erasure " \
                  "takes every shard's lock)"  # fmt: skip
        if (condition(r.conditions, ConditionType.RUNNING) or {}).get("reason") != Reason.WAITING_FOR_BACKUP:
            r.emit(EventSpec(False, Reason.WAITING_FOR_BACKUP, message))
        r.cond(ConditionType.RUNNING, "False", Reason.WAITING_FOR_BACKUP, message)
        r.set("phase", Phase.PENDING)
        return
    r.start(found, due[0], due[1], settings, (digest, version))


def register(settings: OperatorSettings, cluster: Cluster) -> None:
    """Register the handlers with kopf (called once by the operator's startup)."""
    register_reconciler(ERASURES, "erasures", reconcile_erasure, settings, cluster, scrape_state=False)

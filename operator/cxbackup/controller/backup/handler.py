"""RecordingBackup: the reconcile of one resource, and its kopf wiring.

Each tick: account finished Jobs (history, checkpoint, Events, metrics), then, when a run is due and
none is active, check the referenced Secrets and PVC, compute one window for all shards, create the
ConfigMap and the Indexed Job, and record the current run; finally summarise shard progress. Decisions
are in `decisions` (pure), Job manifests in `manifests`; every API call goes through the injected
`Cluster`, every Event through the injected `Emit`, and the clock is `now`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from cxbackup import metrics
from cxbackup.api.common import BACKUPS, ProxySettings
from cxbackup.api.recordingbackup import MAX_NAME_LENGTH, NAME_TOO_LONG, CurrentRun, RecordingBackup
from cxbackup.api.status import ConditionType, Phase, Reason
from cxbackup.backup.errors import ConfigError
from cxbackup.backup.window import RecordingWindow, compute_window
from cxbackup.controller.backup.decisions import (
    TRIGGER_ANNOTATION,
    JobView,
    account_run,
    due_slot,
    job_view,
    progress_text,
    retention_problem,
    shard_totals,
)
from cxbackup.controller.backup.manifests import (
    LABEL_AUDIT,
    LABEL_BACKUP,
    backup_properties,
    build_audit_configmap,
    build_audit_job,
    build_backup_configmap,
    build_backup_job,
    placement_problem,
    target_placement,
)
from cxbackup.controller.cluster import Cluster, ClusterError
from cxbackup.controller.conditions import condition, set_condition
from cxbackup.controller.events import Emit, EventSpec
from cxbackup.controller.jobstate import ANNOTATION_ACCOUNTED, pod_problems
from cxbackup.controller.manifests import pod_settings_problem, run_id_for
from cxbackup.controller.references import (
    Blocked,
    EndpointPolicy,
    SecretNeed,
    endpoint_problem,
    endpoint_syntax_problem,
    gather_secrets,
    pvc_problem,
    secret_problem,
)
from cxbackup.controller.registration import Interrupted, register_reconciler, validated
from cxbackup.controller.schedule import ScheduleError, expected_interval, next_after, validate_schedule
from cxbackup.controller.settings import OperatorSettings
from cxbackup.core.times import from_ms, iso, parse_time, to_ms

__all__ = ["reconcile_backup", "register"]

log = logging.getLogger(__name__)


def _name_problem(backup: RecordingBackup) -> Blocked | None:
    """A name too long for its worker pods' names (the CRD refuses one at creation; an object stored before
    that rule is refused here: its pods could never report to it)."""
    name: str = backup.metadata["name"]
    if len(name) <= MAX_NAME_LENGTH:
        return None
    return Blocked(
        Reason.INVALID_SPEC,
        f"{NAME_TOO_LONG}; this one has {len(name)}: create the backup again under a shorter name (with the "
        "same target, recordings already there are skipped)",
        invalid=True,
    )


def _check_spec(backup: RecordingBackup, now: dt.datetime) -> None:
    if (blocked := _name_problem(backup)) is not None:
        raise blocked
    spec = backup.spec
    if spec.schedule is not None:
        try:
            validate_schedule(spec.schedule, spec.time_zone)
        except ScheduleError as exc:
            raise Blocked(Reason.INVALID_SCHEDULE, str(exc), invalid=True) from exc
    if (problem := retention_problem(backup, now)) is not None:
        raise Blocked(Reason.INVALID_SPEC, problem, invalid=True)
    for field, url, _ in _endpoints(backup):  # before the config is rendered: name the spec's field
        if (blocked := endpoint_syntax_problem(field, url)) is not None:
            raise blocked
    try:
        base = backup_properties(backup, None)
        last_end = backup.status.last_recording_end_time if backup.status else None
        compute_window(base, now, to_ms(last_end) if last_end else None)
    except ConfigError as exc:
        raise Blocked(
            Reason.INVALID_SPEC, f"{exc} (in the rendered config.properties; fix the spec)", invalid=True
        ) from exc


def _secret_needs(backup: RecordingBackup) -> list[SecretNeed]:
    spec = backup.spec
    gws = spec.source.gws_credentials
    needs = [SecretNeed("spec.source.gwsCredentials", gws.name, (gws.username_key, gws.password_key))]
    if spec.source.s3_credentials is not None and not spec.media.metadata_only:
        c = spec.source.s3_credentials
        needs.append(SecretNeed("spec.source.s3Credentials", c.name, (c.access_key_id_key, c.secret_access_key_key)))
    if spec.target.s3 is not None:
        c = spec.target.s3.credentials
        needs.append(SecretNeed("spec.target.s3.credentials", c.name, (c.access_key_id_key, c.secret_access_key_key)))
    return needs


_URL_FIELDS = ("spec.source.gwsUriPrefix", "spec.source.s3EndpointUrl", "spec.target.s3.endpointUrl")


def _endpoints(backup: RecordingBackup) -> list[tuple[str, str | None, bool]]:
    """(field, URL, whether it receives a vendor credential) of every endpoint the workers will talk to: the
    recording API's prefix and the URLs the worker makes of it with gwsRecordingsUri and gwsSettingsUri, the
    vendor S3 endpoint, the target's S3 endpoint, and the proxies (a proxy receives the vendor's password
    when the recording API is plain HTTP; through https:// it only relays the encrypted connection)."""
    src, target = backup.spec.source, backup.spec.target
    prefix = src.gws_uri_prefix.rstrip("/")
    plain_gws = src.gws_uri_prefix.startswith("http://")
    return [
        ("spec.source.gwsUriPrefix", src.gws_uri_prefix, True),
        ("spec.source.gwsRecordingsUri", prefix + src.gws_recordings_uri if src.gws_recordings_uri else None, True),
        ("spec.source.gwsSettingsUri", prefix + src.gws_settings_uri if src.gws_settings_uri else None, True),
        ("spec.source.s3EndpointUrl", src.s3_endpoint_url, True),
        ("spec.target.s3.endpointUrl", target.s3.endpoint_url if target.s3 else None, False),
        ("spec.source.gwsProxy.host", _proxy_url(src.gws_proxy), plain_gws),
        ("spec.source.awsProxy.host", _proxy_url(src.aws_proxy), False),
    ]


def _proxy_url(proxy: ProxySettings | None) -> str | None:
    """The proxy URL the worker makes of it (`RcbsConfig.gws_proxy_url`), for the same checks as an endpoint."""
    if proxy is None:
        return None
    host = proxy.host if "://" in proxy.host else f"http://{proxy.host}"
    return f"{host.rstrip('/')}:{proxy.port}"


def _check_references(
    cluster: Cluster, backup: RecordingBackup, policy: EndpointPolicy
) -> tuple[list[str], tuple[str, ...] | None]:
    """Check the endpoints, then gather the referenced Secrets and PVC, then whether the run's pods can be placed
    on the PVC (placement.py: more than one shard on a ReadWriteOncePod claim cannot); raise the first problem as
    Blocked. Returns the fields that use plain HTTP (allowed by the installer) and the PVC's access modes."""
    ns = backup.metadata["namespace"]
    for field, url, vendor in _endpoints(backup):
        proxy = field not in _URL_FIELDS and field.endswith("Proxy.host")
        if (problem := endpoint_problem(field, url, policy, vendor=vendor, proxy=proxy)) is not None:
            raise problem
    needs = _secret_needs(backup)
    problem = secret_problem(ns, needs, gather_secrets(cluster, ns, needs))
    pvc = backup.spec.target.pvc
    modes: tuple[str, ...] | None = None
    if problem is None and pvc is not None:
        modes = cluster.pvc_access_modes(ns, pvc.claim_name)
        problem = pvc_problem("spec.target.pvc.claimName", ns, pvc.claim_name, modes is not None)
        problem = problem or placement_problem(backup, modes)
    if problem is not None:
        raise problem
    plain_http = [
        field
        for field, url, _ in _endpoints(backup)
        if url and url.startswith("http://") and field in _URL_FIELDS  # not the paths and proxies made of them
    ]
    return plain_http, modes


def _start_run(
    cluster: Cluster,
    backup: RecordingBackup,
    slot: dt.datetime,
    now: dt.datetime,
    settings: OperatorSettings,
    access_modes: tuple[str, ...] | None,
) -> tuple[str, dict[str, Any]]:
    status = backup.status
    last_end = status.last_recording_end_time if status else None
    base = backup_properties(backup, None)
    window = compute_window(base, now, to_ms(last_end) if last_end else None)
    run_id = run_id_for(slot)
    configmap = build_backup_configmap(backup, run_id, window)
    job = build_backup_job(backup, run_id, window, settings.jobs, run_start=now, access_modes=access_modes)
    cluster.create_object(configmap)
    created = cluster.create_object(job)
    name = job["metadata"]["name"]
    current = CurrentRun(
        job_name=name,
        window_start=from_ms(window.start_ms),
        window_end=from_ms(window.end_ms),
        start_time=now,
        replicas=backup.spec.replicas,
    ).model_dump(by_alias=True, mode="json")
    if not created:
        log.info("Job %s already exists; adopting it", name)
    placed = target_placement(backup, access_modes, backup.spec.replicas, {})
    if not isinstance(placed, Blocked):
        log.info("Job %s placement: %s", name, placed.reason)
    return name if created else "", current


def reconcile_backup(
    body: Mapping[str, Any],
    *,
    cluster: Cluster,
    emit: Emit,
    now: dt.datetime,
    settings: OperatorSettings,
    states: metrics.ObjectStates = metrics.STATE,
) -> dict[str, Any]:
    """One reconciliation of one RecordingBackup; returns the status fields to write."""
    backup = validated(RecordingBackup, body, emit)
    if backup is None:
        return {"phase": Phase.INVALID}
    changes: dict[str, Any] = {}
    try:
        _reconcile(backup, changes, cluster, emit, now, settings, states)
    except ClusterError as exc:
        raise Interrupted(changes, exc) from exc
    return changes


def _reconcile(
    backup: RecordingBackup,
    changes: dict[str, Any],
    cluster: Cluster,
    emit: Emit,
    now: dt.datetime,
    settings: OperatorSettings,
    states: metrics.ObjectStates,
) -> None:
    ns: str = backup.metadata["namespace"]
    name: str = backup.metadata["name"]
    generation = backup.metadata.get("generation")
    status_dump = backup.status.model_dump(by_alias=True, mode="json", exclude_none=True) if backup.status else {}
    conditions: list[dict[str, Any]] | None = status_dump.get("conditions")
    with states.lock:
        state = states.backups.setdefault((ns, name), metrics.BackupState())
        created = parse_time(backup.metadata.get("creationTimestamp"))
        state.created = created.timestamp() if created else None
    metrics.initialize_backup(ns, name)

    views = [job_view(j) for j in cluster.list_jobs(ns, f"{LABEL_BACKUP}={name}")]
    views.sort(key=lambda v: v.run_start)
    history_names = {h.get("jobName") for h in status_dump.get("history") or []}

    # 1. account finished runs (idempotent: history is written before the Job is annotated)
    for view in views:
        if not view.finished or view.accounted:
            continue
        if view.name not in history_names:
            if not view.succeeded:
                # name the cause the Job's own message cannot (OOMKilled, a killed pod, a missing image)
                problems = pod_problems(cluster.job_pods(ns, view.name))
                if problems:
                    detail = "; ".join(str(p) for p in problems)
                    view = dataclasses.replace(view, failure_message=f"{view.failure_message}; {detail}".lstrip("; "))
            outcome = account_run(backup, view, now)
            for key, value in outcome.status_patch.items():
                changes[key] = value
            status_dump.update(outcome.status_patch)
            history_names.add(view.name)
            metrics.record_backup_run(
                ns,
                name,
                result="succeeded" if outcome.succeeded else "failed",
                seconds=outcome.seconds,
                downloaded=outcome.counts["downloaded"],
                skipped=outcome.counts["skipped"],
                failed=outcome.counts["failed"],
                nbytes=outcome.counts["bytes"],
                erased=outcome.counts["erased"],
                retention_deleted=outcome.counts["retentionDeleted"],
            )
            emit(EventSpec(not outcome.succeeded, outcome.event_reason, outcome.event_message))
            if outcome.succeeded:
                conditions = set_condition(
                    conditions,
                    ConditionType.READY,
                    "True",
                    Reason.LAST_RUN_SUCCEEDED,
                    outcome.event_message,
                    now=now,
                    generation=generation,
                )
                conditions = set_condition(
                    conditions,
                    ConditionType.DEGRADED,
                    "False",
                    Reason.LAST_RUN_SUCCEEDED,
                    "",
                    now=now,
                    generation=generation,
                )
            else:
                conditions = set_condition(
                    conditions,
                    ConditionType.DEGRADED,
                    "True",
                    Reason.RUN_FAILED,
                    outcome.event_message,
                    now=now,
                    generation=generation,
                )
            changes["phase"] = Phase.SUCCEEDED if outcome.succeeded else Phase.FAILED
        cluster.patch_job_annotations(ns, view.name, {ANNOTATION_ACCOUNTED: "true"})

    # 2. prune old finished Jobs beyond the history limits
    _prune(cluster, backup, views)

    active = [v for v in views if v.active]
    due = due_slot(backup, views, now)
    current = active[-1] if active else None

    # 3. start a run when due
    if due is not None:
        slot, reason = due
        if current is not None and backup.spec.concurrency_policy == "Forbid":
            metrics.record_backup_skipped(ns, name)
            emit(
                EventSpec(
                    False,
                    Reason.RUN_SKIPPED,
                    f"a run was due ({reason}) but {current.name} is still running "
                    "(concurrencyPolicy Forbid); the next run covers its window",
                )
            )
            _after_start(backup, changes, now, reason)
        else:
            if current is not None:
                cluster.delete_job(ns, current.name)
                emit(
                    EventSpec(
                        False,
                        Reason.RUN_REPLACED,
                        f"stopped {current.name} to start a new run (concurrencyPolicy Replace)",
                    )
                )
            try:
                _check_spec(backup, now)
                if (pod_problem := pod_settings_problem(backup.spec.pod, settings.jobs)) is not None:
                    raise pod_problem
                plain_http, access_modes = _check_references(cluster, backup, settings.endpoints)
            except Blocked as blocked:
                conditions = blocked.ready_false(conditions, emit, now=now, generation=generation)
                changes["phase"] = blocked.phase
                changes["conditions"] = conditions
                return
            if plain_http:
                emit(
                    EventSpec(
                        True,
                        Reason.PLAIN_HTTP_ALLOWED,
                        f"{', '.join(plain_http)} use plain HTTP (allowed by "
                        "the installer): credentials and recordings cross the network unencrypted",
                    )
                )
            created_name, current_run = _start_run(cluster, backup, slot, now, settings, access_modes)
            changes["currentRun"] = current_run
            changes["shards"] = None
            changes["progress"] = "0%"
            changes["phase"] = Phase.RUNNING
            _after_start(backup, changes, now, reason)
            if created_name:
                window_text = f"{current_run['windowStart']} - {current_run['windowEnd']}"
                emit(
                    EventSpec(
                        False,
                        Reason.RUN_STARTED,
                        f"started {created_name} ({reason}) with {backup.spec.replicas} "
                        f"shard(s) for window {window_text}",
                    )
                )
            conditions = set_condition(
                conditions,
                ConditionType.RUNNING,
                "True",
                reason,
                f"run {current_run['jobName']}",
                now=now,
                generation=generation,
            )
            ready = condition(conditions, ConditionType.READY)
            if ready is None or ready.get("status") != "True":
                conditions = set_condition(
                    conditions,
                    ConditionType.READY,
                    "True",
                    Reason.RUN_STARTED,
                    "references resolved",
                    now=now,
                    generation=generation,
                )
            changes["conditions"] = conditions
            with states.lock:
                state.running = True
            return

    # 4. progress of the active run, or the idle phase
    if current is not None:
        shards = status_dump.get("shards")
        changes["progress"] = progress_text(shards, current.run_id, current.replicas)
        totals = shard_totals(shards, current.run_id)
        changes["counts"] = {k: totals[k] for k in ("downloaded", "skipped", "failed", "bytes")}
        changes["phase"] = Phase.RUNNING
        shard_progress = {
            k: (
                1.0
                if v.get("phase") in ("Succeeded", "Failed")
                else (int(v.get("downloaded", 0)) + int(v.get("skipped", 0)) + int(v.get("failed", 0)))
                / max(int(v.get("total", 0)), 1)
            )
            for k, v in (shards or {}).items()
            if isinstance(v, dict) and v.get("runId") == current.run_id
        }
        conditions = set_condition(
            conditions,
            ConditionType.RUNNING,
            "True",
            Reason.RUN_ACTIVE,
            f"run {current.name}",
            now=now,
            generation=generation,
        )
        conditions = _worker_pods_condition(cluster, emit, ns, current.name, conditions, now, generation)
    else:
        if status_dump.get("currentRun"):
            changes["currentRun"] = None
            changes["progress"] = "100%"
        conditions = set_condition(
            conditions, ConditionType.RUNNING, "False", Reason.IDLE, "no run active", now=now, generation=generation
        )
        if backup.spec.suspend:
            changes["phase"] = Phase.SUSPENDED
        elif not status_dump.get("phase"):
            changes["phase"] = Phase.PENDING
        shard_progress = {}
    with states.lock:
        state.shard_progress = shard_progress
        state.running = current is not None
    if current is None:
        conditions = _reconcile_audit(cluster, emit, backup, status_dump, conditions, now, settings)
    changes["conditions"] = conditions
    with states.lock:
        _update_metric_state(backup, status_dump, state, now)
    if status_dump.get("observedGeneration") != generation:
        changes["observedGeneration"] = generation


def _worker_pods_condition(
    cluster: Cluster,
    emit: Emit,
    ns: str,
    job_name: str,
    conditions: list[dict[str, Any]] | None,
    now: dt.datetime,
    generation: Any,
) -> list[dict[str, Any]]:
    """Degraded (WorkerPodsNotStarting) with an Event while a run's pods cannot start (image missing,
    configuration error), so a run that waits on the node does not look merely slow."""
    stuck = [str(p) for p in pod_problems(cluster.job_pods(ns, job_name)) if p.waiting]
    old = condition(conditions, ConditionType.DEGRADED)
    if stuck:
        message = f"run {job_name} cannot start: " + "; ".join(stuck)
        if old is None or old.get("message") != message:
            emit(EventSpec(True, Reason.WORKER_PODS_NOT_STARTING, message))
        return set_condition(
            conditions,
            ConditionType.DEGRADED,
            "True",
            Reason.WORKER_PODS_NOT_STARTING,
            message,
            now=now,
            generation=generation,
        )
    if old is not None and old.get("reason") == Reason.WORKER_PODS_NOT_STARTING:
        return set_condition(
            conditions,
            ConditionType.DEGRADED,
            "False",
            Reason.WORKER_PODS_STARTED,
            f"run {job_name} pods started",
            now=now,
            generation=generation,
        )
    return list(conditions or [])


AUDIT_DEFAULT_RETENTION_DAYS = 30


def _reconcile_audit(
    cluster: Cluster,
    emit: Emit,
    backup: RecordingBackup,
    status: dict[str, Any],
    conditions: list[dict[str, Any]] | None,
    now: dt.datetime,
    settings: OperatorSettings,
) -> list[dict[str, Any]] | None:
    """Start the periodic audit when due, and turn its findings (written by the audit pod) into a
    condition and an Event. The audit covers the vendor's retained range up to lastRecordingEndTime."""
    audit_spec = backup.spec.audit
    if audit_spec is None or not audit_spec.enabled:
        return conditions
    ns: str = backup.metadata["namespace"]
    name: str = backup.metadata["name"]
    generation = backup.metadata.get("generation")
    found = status.get("audit") or {}
    if found.get("lastTime"):
        missing = int(found.get("missing", 0)) + int(found.get("mismatched", 0))
        message = (
            f"audit at {found['lastTime']}: {found.get('checked', 0)} recordings checked, "
            f"{found.get('missing', 0)} missing, {found.get('mismatched', 0)} size mismatches"
        )
        old = condition(conditions, ConditionType.AUDITED)
        if old is None or old.get("message") != message:
            emit(EventSpec(bool(missing), Reason.AUDIT_MISSING if missing else Reason.AUDIT_PASSED, message))
        conditions = set_condition(
            conditions,
            ConditionType.AUDITED,
            "True",
            Reason.RECORDINGS_MISSING if missing else Reason.COMPLETE,
            message,
            now=now,
            generation=generation,
        )
    end = parse_time(status.get("lastRecordingEndTime"))
    if end is None:
        return conditions
    audits = [job_view(j) for j in cluster.list_jobs(ns, f"{LABEL_AUDIT}={name}")]
    if any(a.active for a in audits):
        return conditions
    last = parse_time(found.get("lastTime"))
    started = [a.run_start for a in audits]
    anchor = max([t for t in (last, *started) if t is not None], default=None)
    if anchor is not None:
        try:
            if next_after(audit_spec.schedule, backup.spec.time_zone, anchor) > now:
                return conditions
        except ScheduleError as exc:
            return set_condition(
                conditions,
                ConditionType.AUDITED,
                "False",
                Reason.INVALID_SCHEDULE,
                f"spec.audit.schedule: {exc}",
                now=now,
                generation=generation,
            )
    days = backup.spec.source.retention_days or AUDIT_DEFAULT_RETENTION_DAYS
    start = now - dt.timedelta(days=days)
    if start >= end:
        return conditions
    window = RecordingWindow(to_ms(start), to_ms(end))
    if (pod_problem := _name_problem(backup) or pod_settings_problem(backup.spec.pod, settings.jobs)) is not None:
        return pod_problem.ready_false(conditions, emit, now=now, generation=generation)
    pvc = backup.spec.target.pvc
    modes = cluster.pvc_access_modes(ns, pvc.claim_name) if pvc is not None else None  # placed like the runs' pods
    cluster.apply_configmap(build_audit_configmap(backup, window))
    audit = build_audit_job(backup, run_id_for(now), window, settings.jobs, run_start=now, access_modes=modes)
    cluster.create_object(audit)
    emit(EventSpec(False, Reason.AUDIT_STARTED, f"auditing {window.describe()} against the target"))
    return conditions


def _after_start(backup: RecordingBackup, changes: dict[str, Any], now: dt.datetime, reason: str) -> None:
    changes["lastRunGeneration"] = backup.metadata.get("generation")
    trigger = (backup.metadata.get("annotations") or {}).get(TRIGGER_ANNOTATION)
    if trigger:
        changes["lastTrigger"] = trigger
    if backup.spec.schedule:
        changes["nextScheduleTime"] = iso(next_after(backup.spec.schedule, backup.spec.time_zone, now))


def _update_metric_state(
    backup: RecordingBackup, status: dict[str, Any], state: metrics.BackupState, now: dt.datetime
) -> None:
    end = parse_time(status.get("lastRecordingEndTime"))
    ok = parse_time(status.get("lastSuccessfulTime"))
    state.last_recording_end = end.timestamp() if end else None
    state.last_success = ok.timestamp() if ok else None
    if backup.spec.schedule:
        try:
            state.expected_interval = expected_interval(backup.spec.schedule, backup.spec.time_zone, now)
        except ScheduleError:
            state.expected_interval = None
    days = backup.spec.source.retention_days
    state.retention_seconds = days * 86400.0 if days else None
    sweep = status.get("retention")
    if isinstance(sweep, dict):
        state.sweep = {k: int(sweep.get(k) or 0) for k in metrics.SWEEP_STATES}
    index = status.get("index")
    if isinstance(index, dict):
        state.index_recordings = int(index.get("recordings") or 0)
        state.index_bytes = int(index.get("bytes") or 0)
    audit = status.get("audit") or {}
    if "missing" in audit:
        state.audit_missing = int(audit["missing"])
        oldest = parse_time(audit.get("oldestMissingStart"))
        state.oldest_unbacked_start = oldest.timestamp() if oldest else None


def _prune(cluster: Cluster, backup: RecordingBackup, views: list[JobView]) -> None:
    ns = backup.metadata["namespace"]
    done = [v for v in views if v.finished and v.accounted]
    ok = [v for v in done if v.succeeded]
    bad = [v for v in done if not v.succeeded]
    extra = ok[: max(len(ok) - backup.spec.successful_jobs_history_limit, 0)]
    extra += bad[: max(len(bad) - backup.spec.failed_jobs_history_limit, 0)]
    for view in extra:
        cluster.delete_job(ns, view.name)
        cluster.delete_configmap(ns, f"{view.name}-config")


def register(settings: OperatorSettings, cluster: Cluster) -> None:
    """Register the handlers with kopf (called once by the operator's startup)."""
    register_reconciler(BACKUPS, "backups", reconcile_backup, settings, cluster)

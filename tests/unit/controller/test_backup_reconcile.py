"""reconcile_backup against an in-memory cluster and an injected clock: a run starts when due and only when
its references resolve, finished runs are accounted once (the checkpoint only on success), pod problems
are named, concurrency policies, pruning, the audit, and a failed API call keeps what was decided."""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

from cxbackup.controller.backup.handler import reconcile_backup
from cxbackup.controller.cluster import SecretView
from cxbackup.controller.events import EventSpec
from cxbackup.controller.manifests import LABEL_RUN
from cxbackup.controller.references import EndpointPolicy
from cxbackup.controller.registration import Interrupted
from cxbackup.controller.schedule import RUN_NOW_ANNOTATION
from cxbackup.controller.settings import OperatorSettings
from tests.unit.controller.fakes import VENDOR_HOSTS, FakeCluster, ReconcileHarness, chart_default_settings

T0 = dt.datetime(2026, 11, 23, 5, 0, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)
SPEC: dict[str, Any] = {
    "source": {
        "gwsUriPrefix": "https://vendor.example/api/v2",
        "gwsCredentials": {"name": "gws"},
        "s3Credentials": {"name": "s3"},
        "retentionDays": 30,
    },
    "window": {"minAge": "PT30M", "maxAge": "2"},
    "target": {"pvc": {"claimName": "backup"}},
    "replicas": 2,
}


def _cluster() -> FakeCluster:
    cluster = FakeCluster()
    cluster.put_credentials("gws", {"GWS_USERNAME": b"u", "GWS_PASSWORD": b"p"})
    cluster.put_credentials("s3", {"AWS_ACCESS_KEY_ID": b"a", "AWS_SECRET_ACCESS_KEY": b"s"})
    cluster.put_pvc("backup")
    return cluster


@dataclass
class Harness(ReconcileHarness):
    """One RecordingBackup, with the Secrets and PVC it names."""

    spec: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(SPEC))
    cluster: FakeCluster = field(default_factory=_cluster)

    name: ClassVar[str] = "rb"
    created: ClassVar[str] = "2026-11-23T04:00:00Z"
    reconciler = staticmethod(reconcile_backup)

    def run_job(self) -> str:
        names = [n for n in self.cluster.job_names() if n.startswith("rb-") and "audit" not in n]
        assert len(names) >= 1, self.cluster.jobs
        return names[-1]

    def report_shards(self, run_id: str, downloaded: int, failed: int = 0) -> None:
        """What the shard pods write into status.shards while they run."""
        self.status["shards"] = {
            str(i): {"runId": run_id, "phase": "Succeeded", "total": downloaded + failed, "downloaded": downloaded,
                     "skipped": 0, "failed": failed, "bytes": 1000 * downloaded}
            for i in range(1)
        }  # fmt: skip


def _reasons(events: list[EventSpec]) -> list[str]:
    return [e.reason for e in events]


def test_a_new_backup_starts_one_run_with_its_configmap_and_reports_it() -> None:
    h = Harness()
    events = h.tick(T0)
    assert _reasons(events) == ["RunStarted"]
    job_name = h.run_job()
    assert h.cluster.calls == [f"create ConfigMap {job_name}-config", f"create Job {job_name}"]
    job = h.cluster.job(job_name)
    assert job["spec"]["completions"] == 2 and job["spec"]["completionMode"] == "Indexed"
    assert h.status["phase"] == "Running" and h.status["progress"] == "0%"
    assert h.status["currentRun"]["jobName"] == job_name and h.status["currentRun"]["replicas"] == 2
    assert h.cond("Running")["status"] == "True" and h.cond("Ready")["reason"] == "RunStarted"
    assert h.states.backups[("ns", "rb")].running is True
    # the no-recent-success alert counts from the creation until a first success
    assert h.states.backups[("ns", "rb")].created == dt.datetime(2026, 11, 23, 4, 0, tzinfo=dt.UTC).timestamp()
    # the next tick sees the active run: no second Job, progress from the shards, no new Event
    assert h.tick(T0 + MINUTE) == []
    assert h.cluster.job_names() == [job_name]
    assert h.cond("Running")["reason"] == "RunActive"


@pytest.mark.parametrize(
    ("change", "reason", "names"),
    [
        (lambda c: c.secrets.pop(("ns", "gws")), "SecretNotFound",
         "spec.source.gwsCredentials: Secret ns/gws not found"),
        (lambda c: c.put_credentials("s3", {"AWS_ACCESS_KEY_ID": b"a"}), "SecretKeyMissing",
         "spec.source.s3Credentials: Secret ns/s3 has no key AWS_SECRET_ACCESS_KEY"),
        (lambda c: c.pvcs.clear(), "PVCNotFound",
         "spec.target.pvc.claimName: PersistentVolumeClaim ns/backup not found"),
    ],
)  # fmt: skip
def test_a_missing_reference_blocks_the_run_naming_the_field_until_it_exists(
    change: Any, reason: str, names: str
) -> None:
    h = Harness()
    change(h.cluster)
    events = h.tick(T0)
    assert h.cluster.jobs == {} and h.cluster.configmaps == {}
    assert h.status["phase"] == "Blocked"
    assert h.cond("Ready")["status"] == "False" and h.cond("Ready")["reason"] == reason
    assert names in h.cond("Ready")["message"]
    assert [(e.warning, e.reason) for e in events] == [(True, reason)]
    assert h.tick(T0 + MINUTE) == []  # the same problem is not announced again
    h.cluster = _cluster()
    assert _reasons(h.tick(T0 + 2 * MINUTE)) == ["RunStarted"]
    assert h.status["phase"] == "Running"


def test_an_unusable_spec_is_invalid_and_starts_nothing() -> None:
    h = Harness()
    h.spec["window"] = {"minAge": "3", "maxAge": "2"}
    events = h.tick(T0)
    assert h.status["phase"] == "Invalid" and h.cond("Ready")["reason"] == "InvalidSpec"
    assert "minAge" in h.cond("Ready")["message"] and "maxAge" in h.cond("Ready")["message"]
    assert _reasons(events) == ["InvalidSpec"] and h.cluster.jobs == {}


def test_a_body_that_does_not_validate_is_invalid_with_an_event() -> None:
    h = Harness()
    h.spec["replicas"] = "many"
    events = h.tick(T0)
    assert h.status == {"phase": "Invalid"}
    assert [(e.warning, e.reason) for e in events] == [(True, "InvalidSpec")]
    assert h.cluster.calls == []


def test_a_successful_run_is_accounted_once_and_advances_the_checkpoint() -> None:
    h = Harness()
    h.tick(T0)
    name = h.run_job()
    run_id = h.cluster.job(name)["metadata"]["labels"][LABEL_RUN]
    window_end = h.status["currentRun"]["windowEnd"]
    h.report_shards(run_id, downloaded=5)
    h.cluster.finish_job(name, succeeded=True, at=T0 + 5 * MINUTE)
    events = h.tick(T0 + 6 * MINUTE)
    assert _reasons(events) == ["RunSucceeded"] and not events[0].warning
    assert h.status["phase"] == "Succeeded" and "currentRun" not in h.status
    assert h.status["lastRecordingEndTime"] == window_end
    assert h.status["history"][0]["jobName"] == name and h.status["history"][0]["result"] == "Succeeded"
    assert h.status["counts"] == {"downloaded": 5, "skipped": 0, "failed": 0, "bytes": 5000}
    assert h.cond("Ready")["reason"] == "LastRunSucceeded" and h.cond("Degraded")["status"] == "False"
    assert h.cluster.accounted(name)
    assert h.tick(T0 + 7 * MINUTE) == []  # accounted once
    assert len(h.status["history"]) == 1


def test_a_failed_run_names_the_pod_cause_and_keeps_the_checkpoint() -> None:
    h = Harness()
    h.status["lastRecordingEndTime"] = "2026-11-22T00:00:00Z"
    h.tick(T0)
    name = h.run_job()
    h.cluster.add_pod(name, {
        "metadata": {"name": f"{name}-0-abc", "creationTimestamp": "2026-11-23T05:00:01Z"},
        "status": {"containerStatuses": [{"name": "download", "state": {"terminated": {
            "reason": "OOMKilled", "exitCode": 137}}}]},
    })  # fmt: skip
    h.cluster.finish_job(name, succeeded=False, at=T0 + 5 * MINUTE)
    events = h.tick(T0 + 6 * MINUTE)
    assert [(e.warning, e.reason) for e in events] == [(True, "RunFailed")]
    assert "OOMKilled" in events[0].message and "spec.pod.resources.limits.memory" in events[0].message
    assert h.status["phase"] == "Failed"
    assert h.status["lastRecordingEndTime"] == "2026-11-22T00:00:00Z"
    assert "lastSuccessfulTime" not in h.status
    assert h.cond("Degraded")["status"] == "True" and h.cond("Degraded")["reason"] == "RunFailed"
    assert "OOMKilled" in h.status["history"][0]["message"]


def test_forbid_skips_a_due_run_while_one_is_active_and_replace_stops_it() -> None:
    h = Harness()
    h.tick(T0)
    first = h.run_job()
    h.annotations[RUN_NOW_ANNOTATION] = "now-1"
    events = h.tick(T0 + MINUTE)
    assert _reasons(events) == ["RunSkipped"] and h.cluster.job_names() == [first]
    assert h.status["lastTrigger"] == "now-1"

    h.spec["concurrencyPolicy"] = "Replace"
    h.annotations[RUN_NOW_ANNOTATION] = "now-2"
    events = h.tick(T0 + 2 * MINUTE)
    assert _reasons(events) == ["RunReplaced", "RunStarted"]
    assert f"Job {first}" in h.cluster.deleted and first not in h.cluster.job_names()
    assert len(h.cluster.job_names()) == 1


def test_pods_that_cannot_start_make_the_resource_degraded_until_they_do() -> None:
    h = Harness()
    h.tick(T0)
    name = h.run_job()
    stuck = {
        "metadata": {"name": f"{name}-0-x", "creationTimestamp": "2026-11-23T05:00:01Z"},
        "status": {"containerStatuses": [{"name": "download", "state": {"waiting": {
            "reason": "ErrImagePull", "message": "pull access denied"}}}]},
    }  # fmt: skip
    h.cluster.add_pod(name, stuck)
    events = h.tick(T0 + MINUTE)
    assert [(e.warning, e.reason) for e in events] == [(True, "WorkerPodsNotStarting")]
    assert h.cond("Degraded")["reason"] == "WorkerPodsNotStarting" and "ErrImagePull" in h.cond("Degraded")["message"]
    assert h.tick(T0 + 2 * MINUTE) == []
    h.cluster.pods.clear()
    h.tick(T0 + 3 * MINUTE)
    assert h.cond("Degraded")["status"] == "False" and h.cond("Degraded")["reason"] == "WorkerPodsStarted"


def test_finished_jobs_beyond_the_history_limits_are_pruned_with_their_configmaps() -> None:
    h = Harness()
    h.spec["successfulJobsHistoryLimit"] = 1
    for i in range(3):
        h.annotations[RUN_NOW_ANNOTATION] = f"run-{i}"
        h.tick(T0 + i * 10 * MINUTE)
        name = h.run_job()
        h.cluster.finish_job(name, succeeded=True, at=T0 + (i * 10 + 5) * MINUTE)
        h.tick(T0 + (i * 10 + 6) * MINUTE)
    h.tick(T0 + 40 * MINUTE)
    remaining = h.cluster.job_names()
    assert len(remaining) == 1, remaining
    assert len([d for d in h.cluster.deleted if d.startswith("Job ")]) == 2
    assert len([d for d in h.cluster.deleted if d.startswith("ConfigMap ")]) == 2
    assert len(h.status["history"]) == 3  # history keeps what the Jobs no longer show


def test_the_audit_starts_when_due_and_its_findings_become_a_condition() -> None:
    h = Harness()
    h.spec["audit"] = {"enabled": True, "schedule": "0 6 * * *"}
    h.status["lastRecordingEndTime"] = "2026-11-23T00:00:00Z"
    h.status["lastRunGeneration"] = 1
    h.status["phase"] = "Succeeded"
    events = h.tick(T0)
    assert "AuditStarted" in _reasons(events)
    audits = [n for n in h.cluster.job_names() if "audit" in n]
    assert len(audits) == 1 and h.cluster.job(audits[0])["spec"]["completions"] == 1
    assert any(k[1].endswith("audit-config") or "audit" in k[1] for k in h.cluster.configmaps)

    h.status["audit"] = {"lastTime": "2026-11-23T05:10:00Z", "checked": 10, "missing": 2, "mismatched": 0}
    events = h.tick(T0 + 15 * MINUTE)
    assert [(e.warning, e.reason) for e in events if e.reason.startswith("Audit")] == [(True, "AuditMissing")]
    assert h.cond("Audited")["reason"] == "RecordingsMissing"
    assert h.states.backups[("ns", "rb")].audit_missing == 2


def test_a_failed_api_call_keeps_what_was_decided_before_it() -> None:
    h = Harness()
    h.tick(T0)
    name = h.run_job()
    h.cluster.finish_job(name, succeeded=True, at=T0 + 5 * MINUTE)
    h.annotations[RUN_NOW_ANNOTATION] = "again"
    h.cluster.fail.add("create_object")
    with pytest.raises(Interrupted) as info:
        h.reconcile(T0 + 6 * MINUTE)
    assert "HTTP 500" in str(info.value)
    assert info.value.changes["history"][0]["jobName"] == name  # the accounting is written
    assert info.value.changes["phase"] == "Succeeded"
    h.apply(info.value.changes)
    h.cluster.fail.clear()
    assert "RunStarted" in _reasons(h.tick(T0 + 7 * MINUTE))
    assert len(h.status["history"]) == 1  # not accounted twice


# ---- nobody gets more than they had: credentials Secrets and endpoints ------------------------------------


@pytest.mark.parametrize(
    ("secret", "reason", "says"),
    [
        (lambda c: c.put("gws", {"GWS_USERNAME": b"u", "GWS_PASSWORD": b"p"}), "SecretNotLabelled",
         "is not labelled cxbackup.io/credentials=true"),
        (lambda c: c.secrets.__setitem__(("ns", "gws"), SecretView(
            "ns", "gws", {"GWS_USERNAME": b"u", "GWS_PASSWORD": b"p", "tls.key": b"k"},
            {"cxbackup.io/credentials": "true"}, {}, "1", "kubernetes.io/tls")), "SecretNotAllowed",
         "type kubernetes.io/tls"),
        (lambda c: c.put("gws", {"GWS_USERNAME": b"u", "GWS_PASSWORD": b"p"},
                         {"cxbackup.io/credentials": "true", "cxbackup.io/keyring": "true"}), "SecretNotAllowed",
         "label cxbackup.io/keyring"),
    ],
)  # fmt: skip
def test_only_secrets_opted_in_as_credentials_and_holding_no_keys_are_used(secret: Any, reason: str, says: str) -> None:
    h = Harness()
    secret(h.cluster)
    events = h.tick(T0)
    assert h.cluster.jobs == {} and h.status["phase"] == "Blocked"
    assert h.cond("Ready")["reason"] == reason
    assert (
        "spec.source.gwsCredentials: Secret ns/gws" in h.cond("Ready")["message"] and says in h.cond("Ready")["message"]
    )
    assert [(e.warning, e.reason) for e in events] == [(True, reason)]


def test_plain_http_endpoints_are_refused_unless_the_installer_allows_them_and_then_announced() -> None:
    h = Harness()
    h.spec["source"]["s3EndpointUrl"] = "http://s3.vendor.example:9000"
    events = h.tick(T0, OperatorSettings(endpoints=EndpointPolicy(vendor_hosts=VENDOR_HOSTS)))
    assert h.cluster.jobs == {} and h.cond("Ready")["reason"] == "InsecureEndpoint"
    assert h.cond("Ready")["message"].startswith("spec.source.s3EndpointUrl: http://s3.vendor.example is plain HTTP")
    assert [e.reason for e in events] == ["InsecureEndpoint"]
    events = h.tick(T0, OperatorSettings(endpoints=EndpointPolicy(allow_plain_http=True, vendor_hosts=VENDOR_HOSTS)))
    assert [(e.warning, e.reason) for e in events][:1] == [(True, "PlainHttpAllowed")]
    assert "spec.source.s3EndpointUrl" in events[0].message and "RunStarted" in _reasons(events)


def test_vendor_hosts_outside_the_installers_allowlist_are_refused_but_not_the_users_own_bucket() -> None:
    h = Harness()
    h.spec["source"]["gwsUriPrefix"] = "https://attacker.example/api/v2"
    events = h.tick(T0, OperatorSettings(endpoints=EndpointPolicy(vendor_hosts=("*.vendor.example",))))
    assert h.cluster.jobs == {} and h.cond("Ready")["reason"] == "EndpointNotAllowed"
    assert "spec.source.gwsUriPrefix: host attacker.example" in h.cond("Ready")["message"]
    assert [e.reason for e in events] == ["EndpointNotAllowed"]
    h.spec["source"]["gwsUriPrefix"] = "https://api.vendor.example/api/v2"
    h.spec["target"] = {
        "s3": {"bucket": "mine", "endpointUrl": "https://minio.internal", "credentials": {"name": "s3"}}
    }
    assert "RunStarted" in _reasons(
        h.tick(T0, OperatorSettings(endpoints=EndpointPolicy(vendor_hosts=("*.vendor.example",))))
    )


def test_with_the_charts_default_values_no_vendor_credential_leaves_for_any_host() -> None:
    h = Harness()
    events = h.tick(T0, chart_default_settings())
    assert h.cluster.jobs == {} and h.status["phase"] == "Blocked"
    ready = h.cond("Ready")
    assert (ready["status"], ready["reason"]) == ("False", "EndpointNotAllowed")
    assert ready["message"].startswith("spec.source.gwsUriPrefix: host vendor.example is not allowed")
    assert "chart value security.vendorHosts is empty" in ready["message"]
    assert [(e.warning, e.reason) for e in events] == [(True, "EndpointNotAllowed")]
    assert events[0].message == ready["message"]
    h.spec["source"]["s3EndpointUrl"] = "https://s3.vendor.example"  # the vendor S3 override is refused too
    h.spec["source"]["gwsUriPrefix"] = "https://api.vendor.example/api/v2"
    allow_api = OperatorSettings(endpoints=EndpointPolicy(vendor_hosts=("api.vendor.example",)))
    h.tick(T0, allow_api)
    assert h.cluster.jobs == {} and "spec.source.s3EndpointUrl: host s3.vendor.example" in h.cond("Ready")["message"]


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("gwsUriPrefix", "https://evil.example\\@api.vendor.example/api/v2", "backslash"),
        ("gwsUriPrefix", "https://u:p@api.vendor.example/api/v2", "user info"),
        ("gwsUriPrefix", "https://api.vendor.example/api/v2#x", "fragment"),
        ("gwsUriPrefix", "https://api.vendor.example%2eevil.example/", "percent-encoding"),
        ("gwsUriPrefix", "https://api.vendor.example./api/v2", "is not of the form"),
        ("gwsRecordingsUri", "/recordings\\@evil.example", "backslash"),
        ("s3EndpointUrl", "https://evil.example\\@s3.vendor.example", "backslash"),
    ],
)
def test_a_url_the_check_and_the_client_could_read_differently_is_refused_naming_the_field(
    field: str, value: str, says: str
) -> None:
    h = Harness()
    h.spec["source"][field] = value
    events = h.tick(T0)
    assert h.cluster.jobs == {} and h.status["phase"] == "Invalid"
    ready = h.cond("Ready")
    assert ready["reason"] == "InvalidSpec" and ready["message"].startswith(f"spec.source.{field}: the URL ")
    assert says in ready["message"] and [e.reason for e in events] == ["InvalidSpec"]


def test_a_proxy_that_would_see_the_password_must_be_an_allowed_host() -> None:
    h = Harness()
    h.spec["source"]["gwsProxy"] = {"host": "proxy.evil.example", "port": 3128}
    assert "RunStarted" in _reasons(h.tick(T0))  # through https:// the proxy relays an encrypted connection
    h = Harness()
    h.spec["source"]["gwsUriPrefix"] = "http://vendor.example/api/v2"
    h.spec["source"]["gwsProxy"] = {"host": "proxy.evil.example", "port": 3128}
    plain = OperatorSettings(endpoints=EndpointPolicy(allow_plain_http=True, vendor_hosts=VENDOR_HOSTS))
    h.tick(T0, plain)
    assert h.cluster.jobs == {} and h.cond("Ready")["reason"] == "EndpointNotAllowed"
    assert h.cond("Ready")["message"].startswith("spec.source.gwsProxy.host: host proxy.evil.example is not one")


def test_a_sweep_deleting_sooner_than_the_vendor_would_is_refused_naming_the_fields() -> None:
    h = Harness()
    h.spec["source"]["retentionDays"] = 90
    h.spec["retention"] = {"keepFor": "P7D", "sweep": "Delete"}  # P7Y meant
    events = h.tick(T0)
    assert h.status["phase"] == "Invalid" and h.cond("Ready")["reason"] == "InvalidSpec"
    message = h.cond("Ready")["message"]
    assert "spec.retention.keepFor (P7D) is shorter than source.retentionDays (90)" in message
    assert _reasons(events) == ["InvalidSpec"] and h.cluster.jobs == {}
    h.spec["retention"]["sweep"] = "DryRun"  # counting is always allowed
    assert "RunStarted" in _reasons(h.tick(T0 + MINUTE))


def test_a_deleting_sweep_without_the_vendors_retention_needs_a_year_or_a_confirmation() -> None:
    h = Harness()
    del h.spec["source"]["retentionDays"]
    h.spec["retention"] = {"keepFor": "P7D", "sweep": "Delete"}  # P7Y meant: no retentionDays to compare with
    events = h.tick(T0)
    assert h.status["phase"] == "Invalid" and h.cond("Ready")["reason"] == "InvalidSpec" and h.cluster.jobs == {}
    message = h.cond("Ready")["message"]
    assert "spec.retention.keepFor (P7D) is shorter than P1Y and source.retentionDays is not set" in message
    assert "spec.retention.confirmKeepFor" in message and _reasons(events) == ["InvalidSpec"]
    h.spec["retention"]["confirmKeepFor"] = "P7Y"  # a confirmation of another duration confirms nothing
    h.tick(T0 + MINUTE)
    assert h.status["phase"] == "Invalid" and h.cluster.jobs == {}
    h.spec["retention"]["confirmKeepFor"] = "P7D"
    assert "RunStarted" in _reasons(h.tick(T0 + 2 * MINUTE))


def test_a_name_too_long_for_its_worker_pods_is_refused_with_a_condition() -> None:
    """An object stored before the CRD limited names (or with the CRD's rule removed): its pods' names could not
    carry its name, so they could never report to it. Nothing is created; Ready=False names metadata.name."""

    class LongNamed(Harness):
        name: ClassVar[str] = "b" * 36

    h = LongNamed()
    events = h.tick(T0)
    assert h.cluster.jobs == {} and h.cluster.configmaps == {}
    ready = h.cond("Ready")
    assert ready["status"] == "False" and ready["reason"] == "InvalidSpec" and h.status["phase"] == "Invalid"
    assert "metadata.name has at most 35 characters" in ready["message"] and "has 36" in ready["message"]
    assert [(e.warning, e.reason) for e in events] == [(True, "InvalidSpec")]

    class Longest(Harness):
        name: ClassVar[str] = "b" * 35

    fits = Longest()
    assert [e.reason for e in fits.tick(T0)] == ["RunStarted"]

"""reconcile_export against an in-memory cluster and an injected clock: the certificate, credentials and
store are resolved before a run starts (never tls.key), a finished run is accounted from its pod's result,
expired artifacts start a sweep, and a failed API call keeps what was decided."""

from __future__ import annotations

import copy
import datetime as dt
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from cxbackup.certs.generate import generate_pair
from cxbackup.certs.validation import inspect_certificate
from cxbackup.controller.events import EventSpec
from cxbackup.controller.export.handler import reconcile_export
from cxbackup.controller.references import EndpointPolicy
from cxbackup.controller.registration import Interrupted
from cxbackup.controller.settings import OperatorSettings
from cxbackup.export.approval import subject_matches
from cxbackup.export.request import TimeRange
from cxbackup.export.result import ExportResult
from cxbackup.export.store import ArtifactInfo
from tests.unit.controller.fakes import VENDOR_HOSTS, FakeCluster, ReconcileHarness, chart_default_settings

REPO = Path(__file__).resolve().parents[3]
T0 = dt.datetime(2026, 8, 25, 0, 15, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)
CERTIFICATE = yaml.safe_load((REPO / "examples" / "recordingcertificate.yaml").read_text())
CERTIFICATE["metadata"]["namespace"] = "ns"
CERTIFICATE["status"] = {"conditions": [{"type": "Ready", "status": "True", "reason": "CertificateValid"}]}


def _cluster() -> FakeCluster:
    cluster = FakeCluster()
    cluster.put_credentials("gws-credentials", {"GWS_USERNAME": b"u", "GWS_PASSWORD": b"p"})
    cluster.put("recording-cert-tls", {"tls.crt": b"cert", "tls.key": b"key"})
    cluster.objects["recordingcertificates"] = [copy.deepcopy(CERTIFICATE)]
    cluster.put_pvc("exports")
    return cluster


@dataclass
class Harness(ReconcileHarness):
    """One ExportJob (the repository's example), with the certificate, Secrets and PVC it names."""

    spec: dict[str, Any] = field(
        default_factory=lambda: yaml.safe_load((REPO / "examples" / "exportjob.yaml").read_text())["spec"]
    )
    cluster: FakeCluster = field(default_factory=_cluster)

    name: ClassVar[str] = "gdpr"
    created: ClassVar[str] = "2026-08-25T00:10:00Z"
    reconciler = staticmethod(reconcile_export)


def _reasons(events: list[EventSpec]) -> list[str]:
    return [e.reason for e in events]


def _result_pod(job_name: str, *, artifacts: int, failed: bool = False) -> dict[str, Any]:
    start = T0
    result = ExportResult("gdpr", "gdprChat", "r1", start, users=("user-4711",), store="/exports",
                          range=TimeRange(start - dt.timedelta(days=30), start))  # fmt: skip
    if failed:
        result.fail("vendor credentials rejected (HTTP 401)", retryable=False, reason="SourceAuthError")
    else:
        result.state = "Succeeded"
        result.completion_time = T0 + 4 * MINUTE
        result.records = 3
        result.artifacts = [
            ArtifactInfo.new(f"a{i}.zip.p7m", T0, 30, run_id="r1", part=i + 1, last=i == artifacts - 1, records=1)
            for i in range(artifacts)
        ]
    state = {"terminated": {"exitCode": 1 if failed else 0, "message": result.to_json()}}
    return {"metadata": {"name": f"{job_name}-x", "creationTimestamp": "2026-08-25T00:15:01Z"},
            "status": {"containerStatuses": [{"name": "export", "state": state}]}}  # fmt: skip


def test_a_new_export_resolves_its_certificate_and_mounts_only_the_certificate() -> None:
    h = Harness()
    events = h.tick(T0)
    assert _reasons(events) == ["ExportStarted"]
    [name] = h.cluster.job_names()
    pod = h.cluster.job(name)["spec"]["template"]["spec"]
    secrets = [v["secret"] for v in pod["volumes"] if "secret" in v]
    assert [s["secretName"] for s in secrets] == ["recording-cert-tls"]
    assert [i["key"] for s in secrets for i in s.get("items", [])] == ["tls.crt"]  # never tls.key
    assert h.status["phase"] == "Running" and h.status["history"][0]["state"] == "Running"
    assert h.cond("Ready")["reason"] == "RunStarted" and h.cond("Running")["status"] == "True"
    assert h.tick(T0 + MINUTE) == [] and h.cluster.job_names() == [name]


@pytest.mark.parametrize(
    ("change", "reason", "names"),
    [
        (lambda c: c.objects.clear(), "CertificateNotFound",
         "spec.certificate.recordingCertificate: RecordingCertificate ns/recording-cert not found"),
        (lambda c: c.secrets.pop(("ns", "recording-cert-tls")), "CertificateNotFound",
         "has no certificate yet (Secret ns/recording-cert-tls not found)"),
        (lambda c: c.secrets.pop(("ns", "gws-credentials")), "SecretNotFound",
         "spec.source.credentialsSecret: Secret ns/gws-credentials not found"),
        (lambda c: c.put_credentials("gws-credentials", {"GWS_USERNAME": b"u"}), "SecretKeyMissing",
         "spec.source.credentialsSecret: Secret ns/gws-credentials has no key GWS_PASSWORD"),
        (lambda c: c.pvcs.clear(), "PVCNotFound", "spec.store.pvc: PersistentVolumeClaim ns/exports not found"),
    ],
)  # fmt: skip
def test_a_missing_reference_blocks_the_run_naming_the_field(change: Any, reason: str, names: str) -> None:
    h = Harness()
    change(h.cluster)
    events = h.tick(T0)
    assert h.cluster.jobs == {} and h.status["phase"] == "Blocked"
    assert h.cond("Ready")["reason"] == reason and names in h.cond("Ready")["message"]
    assert [(e.warning, e.reason) for e in events] == [(True, reason)]
    assert h.tick(T0 + MINUTE) == []
    h.cluster = _cluster()
    assert _reasons(h.tick(T0 + 2 * MINUTE)) == ["ExportStarted"]


def test_an_invalid_request_is_invalid_and_starts_nothing() -> None:
    h = Harness()
    h.spec["users"] = []
    events = h.tick(T0)
    assert h.status["phase"] == "Invalid" and h.cluster.jobs == {}
    assert [(e.warning, e.reason) for e in events] in ([(True, "InvalidSpec")],)


def test_a_finished_run_is_accounted_from_its_result_and_lists_its_artifacts() -> None:
    h = Harness()
    h.tick(T0)
    [name] = h.cluster.job_names()
    h.cluster.add_pod(name, _result_pod(name, artifacts=2))
    h.cluster.finish_job(name, succeeded=True, at=T0 + 4 * MINUTE)
    events = h.tick(T0 + 5 * MINUTE)
    assert _reasons(events) == ["ExportSucceeded"]
    assert h.status["phase"] == "Succeeded" and h.status["history"][0]["state"] == "Succeeded"
    assert [a["name"] for a in h.status["artifacts"]] == ["a0.zip.p7m", "a1.zip.p7m"]
    assert h.states.exports[("ns", "gdpr")].artifacts == 2
    assert h.cluster.accounted(name)
    assert h.tick(T0 + 6 * MINUTE) == []


def test_a_failed_run_reports_the_engine_error() -> None:
    h = Harness()
    h.tick(T0)
    [name] = h.cluster.job_names()
    h.cluster.add_pod(name, _result_pod(name, artifacts=0, failed=True))
    h.cluster.finish_job(name, succeeded=False, at=T0 + 4 * MINUTE)
    events = h.tick(T0 + 5 * MINUTE)
    assert [(e.warning, e.reason) for e in events] == [(True, "ExportFailed")]
    assert h.status["phase"] == "Failed" and "HTTP 401" in h.status["history"][0]["error"]
    assert h.cond("Degraded")["reason"] == "RunFailed" and "artifacts" not in h.status


def test_expired_artifacts_start_one_sweep_and_are_marked_when_it_succeeds() -> None:
    h = Harness()
    h.tick(T0)
    [run] = h.cluster.job_names()
    h.cluster.add_pod(run, _result_pod(run, artifacts=1))
    h.cluster.finish_job(run, succeeded=True, at=T0 + 4 * MINUTE)
    h.tick(T0 + 5 * MINUTE)
    later = T0 + dt.timedelta(days=31)
    events = h.tick(later)
    assert _reasons(events) == ["SweepStarted"]
    [sweep] = [n for n in h.cluster.job_names() if n != run]
    assert h.tick(later + MINUTE) == []  # one sweep at a time
    h.cluster.finish_job(sweep, succeeded=True, at=later + 2 * MINUTE)
    events = h.tick(later + 3 * MINUTE)
    assert _reasons(events) == ["ArtifactsExpired"]
    assert [a["expired"] for a in h.status["artifacts"]] == [True]
    assert h.states.exports[("ns", "gdpr")].artifacts == 0


def test_a_failed_api_call_keeps_the_conditions_decided_before_it() -> None:
    h = Harness()
    h.cluster.fail.add("create_object")
    with pytest.raises(Interrupted) as info:
        h.reconcile(T0)
    assert "HTTP 500" in str(info.value) and "conditions" in info.value.changes
    h.cluster.fail.clear()
    assert _reasons(h.tick(T0 + MINUTE)) == ["ExportStarted"]


def test_a_recording_certificate_that_is_not_ready_blocks_the_export() -> None:
    h = Harness()
    h.cluster.objects["recordingcertificates"][0]["status"] = {
        "conditions": [{"type": "Ready", "status": "False", "reason": "Expired", "message": "expired 2026-01-01"}]
    }
    events = h.tick(T0)
    assert h.cluster.jobs == {} and h.status["phase"] == "Blocked"
    assert h.cond("Ready")["reason"] == "CertificateNotReady"
    assert (
        "RecordingCertificate ns/recording-cert is not Ready (Expired: expired 2026-01-01)"
        in h.cond("Ready")["message"]
    )
    assert [(e.warning, e.reason) for e in events] == [(True, "CertificateNotReady")]


def test_with_the_charts_default_values_no_vendor_credential_leaves_for_any_host() -> None:
    h = Harness()
    events = h.tick(T0, chart_default_settings())
    assert h.cluster.jobs == {} and h.status["phase"] == "Blocked"
    ready = h.cond("Ready")
    assert (ready["status"], ready["reason"]) == ("False", "EndpointNotAllowed")
    assert ready["message"].startswith("spec.source.apiUriPrefix: host example.com is not allowed")
    assert "chart value security.vendorHosts is empty" in ready["message"]
    assert [(e.warning, e.reason) for e in events] == [(True, "EndpointNotAllowed")]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("https://attacker.example\\@example.com/api/v2", "backslash"),
        ("https://gws:secret@example.com/api/v2", "user info"),
        ("https://example.com/api/v2#frag", "fragment"),
        ("https://example.com\t/api/v2", "whitespace"),
    ],
)
def test_an_api_url_the_check_and_the_client_could_read_differently_is_refused(url: str, says: str) -> None:
    h = Harness()
    h.spec["source"]["apiUriPrefix"] = url
    events = h.tick(T0)
    assert h.cluster.jobs == {} and h.status["phase"] == "Invalid"
    ready = h.cond("Ready")
    assert ready["reason"] == "InvalidSpec" and ready["message"].startswith("spec.source.apiUriPrefix: the URL ")
    assert says in ready["message"] and "secret" not in ready["message"] and _reasons(events) == ["InvalidSpec"]


def test_a_plain_http_vendor_api_is_refused_unless_allowed() -> None:
    h = Harness()
    h.spec["source"]["apiUriPrefix"] = "http://vendor.example/api/v2"
    events = h.tick(T0)
    assert h.cluster.jobs == {} and h.cond("Ready")["reason"] == "InsecureEndpoint"
    assert h.cond("Ready")["message"].startswith("spec.source.apiUriPrefix: http://vendor.example is plain HTTP")
    assert [e.reason for e in events] == ["InsecureEndpoint"]
    plain = EndpointPolicy(allow_plain_http=True, vendor_hosts=VENDOR_HOSTS)
    events = h.tick(T0 + MINUTE, OperatorSettings(endpoints=plain))
    assert [e.reason for e in events] == ["PlainHttpAllowed", "ExportStarted"]


BACKUP = yaml.safe_load((REPO / "examples" / "recordingbackup.yaml").read_text())
BACKUP["metadata"]["namespace"] = "ns"


def _subject_access(h: Harness) -> Harness:
    """The example turned into a subjectAccess export of the example RecordingBackup's PVC."""
    for key in ("users", "source", "range"):
        h.spec.pop(key)
    h.spec |= {"type": "subjectAccess", "subject": {"secret": "dsar-117"}, "backup": {"recordingBackup": "recordings"}}
    h.cluster.put_credentials("dsar-117", {"subject": b"phone:+1 647 838 9001\n"})
    h.cluster.objects["recordingbackups"] = [copy.deepcopy(BACKUP)]
    h.cluster.put_pvc("recordings-backup")
    return h


def _s3_target(
    cluster: FakeCluster, credentials: str = "archive-s3", endpoint: str = "https://s3.customer.example"
) -> FakeCluster:
    """The example RecordingBackup turned into one backing up into the bucket `archive` (Secret `credentials`)."""
    cluster.objects["recordingbackups"][0]["spec"]["target"] = {
        "s3": {"bucket": "archive", "prefix": "cc/", "endpointUrl": endpoint, "region": "eu-west-1",
               "credentials": {"name": credentials}},
    }  # fmt: skip
    cluster.put_credentials(credentials, {"AWS_ACCESS_KEY_ID": b"k", "AWS_SECRET_ACCESS_KEY": b"s"})
    return cluster


def _run(h: Harness) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(the run's container, its volumes by name, its backup ConfigMap's config.properties as a dict)."""
    [name] = h.cluster.job_names()
    pod = h.cluster.job(name)["spec"]["template"]["spec"]
    configmap = h.cluster.configmaps[("ns", f"{name}-backup")]
    lines = configmap["data"]["config.properties"].splitlines()
    props = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return pod["containers"][0], {v["name"]: v for v in pod["volumes"]}, props


def test_a_subject_access_export_reads_the_backup_read_only_and_the_subject_from_its_secret() -> None:
    h = _subject_access(Harness())
    [started] = h.tick(T0)
    assert started.reason == "ExportStarted" and "one person's backed-up recordings" in started.message
    [name] = h.cluster.job_names()
    assert h.cluster.calls == [f"create ConfigMap {name}-backup", f"create Job {name}"]  # the ConfigMap first
    job = h.cluster.job(name)
    container, volumes, props = _run(h)
    args = container["args"]
    assert args[:5] == ["export", "run", "--name", "gdpr", "--type"] and args[5] == "subjectAccess"
    assert args[args.index("--subject-file") + 1] == "/etc/cxbackup/subject/subject"
    assert args[args.index("--backup-config") + 1] == "/etc/cxbackup/backup/config.properties"
    assert "--backup-target" not in args
    assert props["targetDir"] == "/backup/contact-center"  # the backup's subPath, where its PVC is mounted
    assert volumes["backup-config"]["configMap"] == {"name": f"{name}-backup"}
    assert volumes["target"]["persistentVolumeClaim"] == {"claimName": "recordings-backup", "readOnly": True}
    assert volumes["subject"]["secret"]["items"] == [{"key": "subject", "path": "subject"}]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["target"] == {"name": "target", "mountPath": "/backup", "readOnly": True}
    assert mounts["backup-config"]["readOnly"] and mounts["subject"]["readOnly"]
    env = {e["name"] for e in container["env"]}
    assert "GWS_USERNAME" not in env  # the vendor is not asked
    assert not {n for n in env if n.startswith("TARGET_AWS")}  # a PVC target and a PVC store: no S3
    assert "838" not in json.dumps(job)  # the subject is in its Secret only
    configmap = h.cluster.configmaps[("ns", f"{name}-backup")]
    assert configmap["metadata"]["ownerReferences"][0]["kind"] == "ExportJob"
    assert configmap["metadata"]["labels"]["cxbackup.io/exportjob"] == "gdpr"


def test_a_subject_access_export_of_an_s3_backup_target_reads_the_bucket_with_the_targets_credentials() -> None:
    h = _subject_access(Harness())
    _s3_target(h.cluster)
    assert _reasons(h.tick(T0)) == ["ExportStarted"]
    container, volumes, props = _run(h)
    assert (props["targetS3Bucket"], props["targetS3Prefix"]) == ("archive", "cc/")
    assert (props["targetS3EndpointUrl"], props["targetS3Region"]) == ("https://s3.customer.example", "eu-west-1")
    assert "targetDir" not in props and "target" not in volumes
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert refs["TARGET_AWS_ACCESS_KEY_ID"] == {"name": "archive-s3", "key": "AWS_ACCESS_KEY_ID"}
    assert refs["TARGET_AWS_SECRET_ACCESS_KEY"] == {"name": "archive-s3", "key": "AWS_SECRET_ACCESS_KEY"}
    assert "TARGET_AWS_ENDPOINT_URL" not in {e["name"] for e in container["env"]}  # the store is a PVC


def test_an_s3_store_and_an_s3_backup_target_share_one_secret_and_keep_their_own_endpoints() -> None:
    h = _subject_access(Harness())
    _s3_target(h.cluster)
    h.spec["store"] = {"s3": "s3://dsar-exports/out", "s3EndpointUrl": "https://store.customer.example",
                       "s3Credentials": {"name": "archive-s3"}}  # fmt: skip
    assert _reasons(h.tick(T0)) == ["ExportStarted"]
    container, _, props = _run(h)
    names = [e["name"] for e in container["env"]]
    assert names.count("TARGET_AWS_ACCESS_KEY_ID") == 1 and names.count("TARGET_AWS_SECRET_ACCESS_KEY") == 1
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["TARGET_AWS_ENDPOINT_URL"] == "https://store.customer.example"  # the store's (export run)
    assert props["targetS3EndpointUrl"] == "https://s3.customer.example"  # the backup's (its config)


@pytest.mark.parametrize("store_credentials", [{"name": "exports-s3"}, None])
def test_an_s3_store_with_other_credentials_than_the_s3_backup_target_is_invalid_naming_both_fields(
    store_credentials: dict[str, str] | None,
) -> None:
    h = _subject_access(Harness())
    _s3_target(h.cluster)
    h.cluster.put_credentials("exports-s3", {"AWS_ACCESS_KEY_ID": b"k2", "AWS_SECRET_ACCESS_KEY": b"s2"})
    h.spec["store"] = {"s3": "s3://dsar-exports/out"} | (
        {"s3Credentials": store_credentials} if store_credentials else {}
    )
    events = h.tick(T0)
    assert h.cluster.jobs == {} and h.cluster.configmaps == {} and h.status["phase"] == "Invalid"
    message = h.cond("Ready")["message"]
    assert h.cond("Ready")["reason"] == "InvalidSpec"
    assert "spec.store.s3Credentials" in message and "spec.target.s3.credentials (Secret archive-s3)" in message
    assert "RecordingBackup ns/recordings" in message and "set spec.store.s3Credentials.name to archive-s3" in message
    assert [(e.warning, e.reason) for e in events] == [(True, "InvalidSpec")]


def test_a_restarted_operator_adopts_the_runs_backup_configmap() -> None:
    h = _subject_access(Harness())
    h.tick(T0)
    [name] = h.cluster.job_names()
    h.cluster.jobs.clear()  # as if the operator had stopped between the ConfigMap and the Job
    h.status.pop("history", None)
    h.status.pop("lastRunGeneration", None)
    assert _reasons(h.tick(T0 + MINUTE)) == ["ExportStarted"]
    assert h.cluster.job_names() == [name] and list(h.cluster.configmaps) == [("ns", f"{name}-backup")]


@pytest.mark.parametrize(
    ("change", "reason", "names"),
    [
        (lambda c: c.objects.pop("recordingbackups"), "BackupNotFound",
         "spec.backup.recordingBackup: RecordingBackup ns/recordings not found"),
        (lambda c: c.secrets.pop(("ns", "dsar-117")), "SecretNotFound", "spec.subject.secret: Secret ns/dsar-117"),
        (lambda c: c.put("dsar-117", {"subject": b"x"}), "SecretNotLabelled", "spec.subject.secret"),
        (lambda c: c.pvcs.discard(("ns", "recordings-backup")), "PVCNotFound",
         "spec.backup.recordingBackup (its target.pvc.claimName)"),
        (lambda c: _s3_target(c).secrets.pop(("ns", "archive-s3")), "SecretNotFound",
         "spec.backup.recordingBackup (its target.s3.credentials): Secret ns/archive-s3 not found"),
        (lambda c: _s3_target(c).put_credentials("archive-s3", {"AWS_ACCESS_KEY_ID": b"k"}), "SecretKeyMissing",
         "spec.backup.recordingBackup (its target.s3.credentials): Secret ns/archive-s3 has no key "
         "AWS_SECRET_ACCESS_KEY"),
        (lambda c: _s3_target(c, endpoint="http://s3.customer.example"), "InsecureEndpoint",
         "spec.backup.recordingBackup (its target.s3.endpointUrl): http://s3.customer.example is plain HTTP"),
    ],
)  # fmt: skip
def test_a_subject_access_export_without_its_backup_or_subject_is_blocked_naming_the_field(
    change: Any, reason: str, names: str
) -> None:
    h = _subject_access(Harness())
    change(h.cluster)
    events = h.tick(T0)
    assert h.cluster.jobs == {} and h.cluster.configmaps == {} and h.status["phase"] in ("Blocked", "Invalid")
    assert h.cond("Ready")["reason"] == reason and names in h.cond("Ready")["message"], h.cond("Ready")
    assert [(e.warning, e.reason) for e in events] == [(True, reason)]


def test_a_pruned_subject_access_run_takes_its_backup_configmap_with_it() -> None:
    h = _subject_access(Harness())
    h.spec["schedule"] = "0 * * * *"
    names = []
    for hour in range(5):
        now = T0 + dt.timedelta(hours=hour)
        h.tick(now)
        [name] = [n for n in h.cluster.job_names() if n not in names]
        names.append(name)
        h.cluster.finish_job(name, succeeded=True, at=now + MINUTE)
    h.tick(T0 + dt.timedelta(hours=4, minutes=30))  # accounts the last run
    h.tick(T0 + dt.timedelta(hours=4, minutes=31))  # prunes
    kept = h.cluster.job_names()
    assert len(kept) == 3 and kept == names[-3:]  # KEEP_FINISHED_JOBS
    assert sorted(n for _, n in h.cluster.configmaps) == [f"{n}-backup" for n in kept]


EXPORT_UID = "0b1f7c1e-4f5a-4c8e-9a51-2f2d6b6f0a11"
OTHER_UID = "7d3e9a40-1b2c-4d5e-8f60-718293a4b5c6"
CERT_UID = "c0ffee00-1111-4222-8333-444455556666"
BEFORE = dt.datetime(2026, 8, 25, 0, 0, tzinfo=dt.UTC)
"""Before the ExportJob's creation (2026-08-25T00:10:00Z): when its subject and certificate Secrets were made."""
KEYRING_LABELS = {"cxbackup.io/keyring": "true", "cxbackup.io/certificate": "recording-cert"}


@functools.cache
def _requester_pem(seed: str = "requester") -> bytes:
    """A requester's certificate (PEM), valid at T0; `seed` tells certificates apart."""
    return generate_pair(seed, "US", "California", "Requester", 365, now=T0 - dt.timedelta(days=1))[1]


@dataclass
class DecryptHarness(Harness):
    """The subjectAccess example with spec.decryptMedia on the example RecordingCertificate, which the key
    owner allowed for this ExportJob (name and uid); every Secret as the consent rules want it."""

    uid: str = EXPORT_UID

    def body(self) -> dict[str, Any]:
        body = super().body()
        body["metadata"]["uid"] = self.uid
        return body


def _decrypting(
    *, allowed: list[Any] | None = None, keyring: dict[str, bytes] | None = None, uid: str = EXPORT_UID
) -> DecryptHarness:
    h = _subject_access(DecryptHarness(uid=uid))
    assert isinstance(h, DecryptHarness)
    h.spec["decryptMedia"] = {"recordingCertificate": "recording-cert"}
    h.spec["certificate"] = {"secret": "requester-cert"}
    h.cluster.put_credentials("dsar-117", {"subject": b"phone:+1 647 838 9001\n"}, immutable=True, created=BEFORE)
    h.cluster.put("requester-cert", {"tls.crt": _requester_pem()}, immutable=True, created=BEFORE)
    rcert = h.cluster.objects["recordingcertificates"][0]
    rcert["metadata"]["uid"] = CERT_UID
    rcert["spec"]["decryptionAllowedFor"] = [{"exportJob": "gdpr", "uid": EXPORT_UID}] if allowed is None else allowed
    h.cluster.put(
        "recording-cert-keyring",
        {"1.crt": b"c", "1.key": b"k"} if keyring is None else keyring,
        dict(KEYRING_LABELS),
        annotations={"cxbackup.io/keyring": "true", "cxbackup.io/certificate-uid": CERT_UID},
    )
    return h


def _refused(h: Harness, reason: str, *says: str, now: dt.datetime = T0) -> str:
    """Tick once: no Job, no ConfigMap, Ready False with `reason`, one Warning; returns the message."""
    events = h.tick(now)
    assert h.cluster.jobs == {} and h.cluster.configmaps == {}, h.cluster.job_names()
    ready = h.cond("Ready")
    assert ready["reason"] == reason, ready
    for text in says:
        assert text in ready["message"], ready["message"]
    assert [(e.warning, e.reason) for e in events] == [(True, reason)]
    return str(ready["message"])


def test_decrypted_media_mount_the_keyring_and_pass_what_was_approved_to_the_pod() -> None:
    h = _decrypting()
    [started] = h.tick(T0)
    assert started.reason == "ExportStarted"
    [name] = h.cluster.job_names()
    pod = h.cluster.job(name)["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert args[args.index("--keyring") + 1] == "/etc/cxbackup/keyring" and "--decrypt-media" in args
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["keyring"]["secret"] == {"secretName": "recording-cert-keyring", "defaultMode": 0o440}
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["keyring"]["readOnly"] is True
    assert volumes["certificate"]["secret"]["secretName"] == "requester-cert"
    # what the operator approved, for the pod to check against what it mounts
    digest = args[args.index("--verify-subject") + 1]
    assert subject_matches(b"phone:+1 647 838 9001\n", digest) and not subject_matches(b"phone:+1 555 0100\n", digest)
    assert "647" not in digest and "9001" not in digest  # a salted, memory-hard digest, not the number
    fingerprint = args[args.index("--verify-certificate") + 1]
    assert fingerprint == inspect_certificate(_requester_pem(), now=T0).fingerprint


@pytest.mark.parametrize(
    ("allowed", "says"),
    [
        ([], ["does not allow ExportJob gdpr", f"adds {{exportJob: gdpr, uid: {EXPORT_UID}}}"]),
        ([{"exportJob": "gdpr-2", "uid": EXPORT_UID}], ["does not allow ExportJob gdpr"]),
        ([{"exportJob": "gdpr", "uid": OTHER_UID}],
         [f"allows ExportJob gdpr with uid {OTHER_UID}, but this ExportJob's uid is {EXPORT_UID}"]),
        (["gdpr"], ["by name only", f"replaces the name with {{exportJob: gdpr, uid: {EXPORT_UID}}}"]),
    ],
)  # fmt: skip
def test_consent_names_this_very_export_job_by_name_and_uid(allowed: list[Any], says: list[str]) -> None:
    h = _decrypting(allowed=allowed)
    _refused(h, "DecryptionNotAllowed", "spec.decryptMedia.recordingCertificate", *says)


def test_an_export_job_deleted_and_created_again_under_the_consented_name_is_not_consented() -> None:
    h = _decrypting()
    assert _reasons(h.tick(T0)) == ["ExportStarted"]
    # deleted (its Jobs go with it) and created again with the same name: another uid, another spec
    again = _decrypting(uid=OTHER_UID)
    again.spec["subject"] = {"secret": "dsar-118"}
    again.cluster.put_credentials("dsar-118", {"subject": b"agent:Someone Else\n"}, immutable=True, created=BEFORE)
    _refused(again, "DecryptionNotAllowed", f"allows ExportJob gdpr with uid {EXPORT_UID}", OTHER_UID)


def test_a_consented_export_job_whose_spec_changed_decrypts_no_more() -> None:
    h = _decrypting()
    assert _reasons(h.tick(T0)) == ["ExportStarted"]
    [first] = h.cluster.job_names()
    h.cluster.finish_job(first, succeeded=True, at=T0 + MINUTE)
    h.tick(T0 + 2 * MINUTE)
    h.spec["certificate"] = {"secret": "attacker-cert"}  # the artifact to another certificate
    h.cluster.put("attacker-cert", {"tls.crt": _requester_pem("attacker")}, immutable=True, created=BEFORE)
    h.generation = 2
    events = h.tick(T0 + 3 * MINUTE)
    assert h.cluster.job_names() == [first]  # no new run
    assert h.cond("Ready")["reason"] == "DecryptionNotAllowed"
    assert (
        "is at generation 2" in h.cond("Ready")["message"] and "Delete it, create it anew" in h.cond("Ready")["message"]
    )
    assert [(e.warning, e.reason) for e in events] == [(True, "DecryptionNotAllowed")]


def test_a_consenting_certificate_that_is_not_ready_consents_for_nothing() -> None:
    h = _decrypting()
    rcert = h.cluster.objects["recordingcertificates"][0]
    rcert["status"] = {"conditions": [{"type": "Ready", "status": "False", "reason": "SecretNotManaged",
                                       "message": "spec.keyringSecret: not this certificate's keyring"}]}  # fmt: skip
    _refused(h, "CertificateNotReady", "spec.decryptMedia.recordingCertificate", "is not Ready (SecretNotManaged")


def test_a_certificate_whose_spec_the_operator_has_not_checked_yet_consents_for_nothing() -> None:
    h = _decrypting()
    rcert = h.cluster.objects["recordingcertificates"][0]
    rcert["metadata"]["generation"] = 3
    rcert["status"]["conditions"][0]["observedGeneration"] = 2
    _refused(h, "CertificateNotReady", "has not checked generation 3")


@pytest.mark.parametrize(
    ("keyring_secret", "ring_labels", "says"),
    [
        # the tenant's own certificate "vic" names the victim's default keyring: refused by its name alone
        ("victim-keyring", {"cxbackup.io/keyring": "true", "cxbackup.io/certificate": "victim"},
         "spec.keyringSecret: victim-keyring ends with -keyring or -tls"),
        ("victim-tls", {"cxbackup.io/certificate": "victim"}, "spec.keyringSecret: victim-tls ends with"),
        # a custom keyring name of the victim's: its labels name the victim
        ("victim-ring", {"cxbackup.io/keyring": "true", "cxbackup.io/certificate": "victim"},
         "is not the keyring the operator created for this certificate"),
    ],
)  # fmt: skip
def test_a_certificate_pointing_its_keyring_secret_at_another_certificates_keyring_consents_for_nothing(
    keyring_secret: str, ring_labels: dict[str, str], says: str
) -> None:
    """The attacker owns RecordingCertificate `vic` (Ready, its consent names the attacker's ExportJob) and
    points its spec.keyringSecret at the victim's keyring."""
    h = _decrypting()
    victim_ring = {"9.crt": b"victim cert", "9.key": b"victim key"}
    h.cluster.put(keyring_secret, victim_ring, ring_labels,
                  annotations={"cxbackup.io/certificate-uid": OTHER_UID})  # fmt: skip
    attacker = copy.deepcopy(h.cluster.objects["recordingcertificates"][0])
    attacker["metadata"] |= {"name": "vic", "uid": CERT_UID}
    attacker["spec"]["keyringSecret"] = keyring_secret
    h.cluster.objects["recordingcertificates"].append(attacker)
    h.spec["decryptMedia"] = {"recordingCertificate": "vic"}
    _refused(h, "DecryptionNotAllowed", "RecordingCertificate ns/vic's keyring is not its own", says)


@pytest.mark.parametrize(
    ("annotations", "says"),
    [
        ({"cxbackup.io/keyring": "true"}, f"does not name this RecordingCertificate's uid ({CERT_UID})"),
        ({"cxbackup.io/certificate-uid": OTHER_UID},
         f"is the keyring of an earlier RecordingCertificate recording-cert (uid {OTHER_UID})"),
    ],
)  # fmt: skip
def test_a_keyring_not_proven_to_be_the_consenting_certificates_own_is_not_mounted(
    annotations: dict[str, str], says: str
) -> None:
    h = _decrypting()
    h.cluster.put("recording-cert-keyring", {"1.key": b"k"}, dict(KEYRING_LABELS), annotations=annotations)
    _refused(h, "DecryptionNotAllowed", "keyring is not its own", says)


@pytest.mark.parametrize(
    ("secret", "field", "immutable", "created", "says"),
    [
        ("dsar-117", "spec.subject.secret", False, BEFORE, "is not immutable"),
        ("dsar-117", "spec.subject.secret", True, T0, "was not created before ExportJob ns/gdpr"),
        ("requester-cert", "spec.certificate.secret", False, BEFORE, "is not immutable"),
        ("requester-cert", "spec.certificate.secret", True, T0, "was not created before ExportJob ns/gdpr"),
    ],
)  # fmt: skip
def test_the_subject_and_the_requesters_certificate_cannot_have_changed_since_the_consent(
    secret: str, field: str, immutable: bool, created: dt.datetime, says: str
) -> None:
    h = _decrypting()
    old = h.cluster.secrets[("ns", secret)]
    h.cluster.put(secret, old.data, old.labels, immutable=immutable, created=created)
    message = _refused(h, "DecryptionNotAllowed", f"{field}: Secret ns/{secret}", says)
    if not immutable:
        assert f"kubectl patch secret {secret} -n ns" in message


def test_decrypted_media_go_only_to_a_certificate_secret_not_a_recording_certificate() -> None:
    h = _decrypting()
    h.spec["certificate"] = {"recordingCertificate": "recording-cert"}
    _refused(h, "InvalidSpec", "spec.certificate: with spec.decryptMedia the artifact is encrypted to")
    assert h.status["phase"] == "Invalid"


def test_decrypted_media_without_a_key_in_the_keyring_start_nothing() -> None:
    h = _decrypting(keyring={"1.crt": b"c"})
    _refused(h, "CertificateNotReady", "no key in its keyring Secret ns/recording-cert-keyring")

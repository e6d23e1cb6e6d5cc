"""The Job and ConfigMap builders: sharding, secrets only by reference, restricted pods, explicit window."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from cxbackup.api import RecordingBackup
from cxbackup.api.exportjob import ExportJob
from cxbackup.backup.config import parse_properties
from cxbackup.backup.window import RecordingWindow
from cxbackup.controller.backup.manifests import (
    ANNOTATION_WINDOW_END,
    backup_properties,
    build_audit_job,
    build_backup_configmap,
    build_backup_job,
)
from cxbackup.controller.export.manifests import CertificateSource, build_export_job
from cxbackup.controller.manifests import JobSettings, run_id_for
from cxbackup.controller.references import EndpointPolicy
from cxbackup.controller.settings import OperatorSettings, load_settings
from cxbackup.export.request import ExportRequest

REPO = Path(__file__).resolve().parents[3]
WINDOW = RecordingWindow(1_700_000_000_000, 1_700_086_400_000)
NOW = dt.datetime(2026, 11, 23, 5, 0, tzinfo=dt.UTC)


def _backup(**spec_changes: Any) -> RecordingBackup:
    doc = yaml.safe_load((REPO / "examples" / "recordingbackup.yaml").read_text())
    doc["metadata"].update(namespace="cc", uid="1234-uid")
    doc["spec"].update(spec_changes)
    return RecordingBackup.model_validate(doc)


def _container(job: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = job["spec"]["template"]["spec"]["containers"][0]
    return container


def test_indexed_job_has_one_completion_per_shard() -> None:
    job = build_backup_job(_backup(replicas=4), "r1", WINDOW, JobSettings(), run_start=NOW)
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == 4
    assert spec["backoffLimitPerIndex"] == 3
    args = spec["template"]["spec"]["containers"][0]["args"]
    assert args[:3] == ["download", "-config", "/etc/cxbackup/config.properties"]
    assert "$(JOB_COMPLETION_INDEX)" in args
    assert job["metadata"]["ownerReferences"][0]["uid"] == "1234-uid"
    assert job["metadata"]["annotations"][ANNOTATION_WINDOW_END] == str(WINDOW.end_ms)


def test_credentials_reach_pods_only_as_secret_references() -> None:
    job = build_backup_job(_backup(), "r1", WINDOW, JobSettings(), run_start=NOW)
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    for name in ("GWS_USERNAME", "GWS_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "value" not in env[name]
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] in ("gws-credentials", "vendor-s3")


def test_metadata_only_needs_no_s3_credentials() -> None:
    backup = _backup(media={"metadataOnly": True})
    job = build_backup_job(backup, "r1", WINDOW, JobSettings(), run_start=NOW)
    names = {e["name"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "AWS_ACCESS_KEY_ID" not in names


def test_pod_security_is_restricted() -> None:
    job = build_backup_job(_backup(), "r1", WINDOW, JobSettings(), run_start=NOW)
    pod = job["spec"]["template"]["spec"]
    ctx = pod["containers"][0]["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["restartPolicy"] == "Never"


def test_configmap_renders_a_config_the_worker_parses() -> None:
    backup = _backup(replicas=3, filters={"partitions": ["/sales", "/support"]})
    cm = build_backup_configmap(backup, "r1", WINDOW)
    config = parse_properties(cm["data"]["config.properties"], "cm")
    assert config.total_rcbs_instances == 3
    assert config.window_start == WINDOW.start_ms
    assert config.window_end == WINDOW.end_ms
    assert config.target_dir == "/backup/contact-center"
    assert config.partitions == ("/sales", "/support")
    assert "GWS_PASSWORD" not in cm["data"]["config.properties"]


def test_retention_and_object_lock_reach_the_worker_config() -> None:
    s3 = {"bucket": "archive", "credentials": {"name": "archive"}, "objectLock": "COMPLIANCE"}
    backup = _backup(target={"s3": s3}, retention={"keepFor": "P7Y"})
    config = backup_properties(backup, WINDOW)
    assert (config.retention_period, config.target_s3_object_lock) == ("P7Y", "COMPLIANCE")
    assert backup_properties(_backup(), WINDOW).retention is None


def test_the_sweep_and_legal_holds_reach_the_worker_config_under_the_resource_name() -> None:
    holds = [{"recordingId": "abc"}, {"phoneNumber": "+1 647 838 9001", "reason": "case 44"}, {"partition": "/legal"}]
    backup = _backup(retention={"keepFor": "P7Y", "sweep": "DryRun", "legalHolds": holds})
    config = backup_properties(backup, WINDOW)
    assert config.retention_sweep == "dry-run"
    assert [h.describe() for h in config.legal_holds] == ["id abc", "phone 16478389001", "partition /legal"]
    assert config.legal_holds_source == f"RecordingBackup {backup.metadata['namespace']}/{backup.metadata['name']}"
    # no holds left in the spec: the worker still writes its (now empty) list, so lifted holds are lifted
    plain = backup_properties(_backup(retention={"keepFor": "P7Y"}), WINDOW)
    assert plain.retention_sweep == "off" and plain.legal_holds == () and plain.legal_holds_source != "config"


def test_s3_target_properties_and_credentials() -> None:
    backup = _backup(target={"s3": {"bucket": "my-archive", "prefix": "rec/", "credentials": {"name": "archive"}}})
    config = backup_properties(backup, WINDOW)
    assert config.target_s3_bucket == "my-archive"
    job = build_backup_job(backup, "r1", WINDOW, JobSettings(), run_start=NOW)
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TARGET_AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "archive"


def test_run_ids_are_stable_per_slot_and_names_fit() -> None:
    slot = dt.datetime(2026, 11, 23, 4, 30, tzinfo=dt.UTC)
    assert run_id_for(slot) == run_id_for(slot) == "20261123-043000"
    long = _backup()
    long.metadata["name"] = "x" * 80
    job = build_backup_job(long, run_id_for(slot), WINDOW, JobSettings(), run_start=NOW)
    assert len(job["metadata"]["name"]) <= 63


@pytest.mark.parametrize("bad", ["P1D", "P3D"])
def test_an_iso_min_age_not_below_max_age_is_refused_by_the_config(bad: str) -> None:
    from cxbackup.backup.errors import ConfigError

    backup = _backup(window={"minAge": bad, "maxAge": "P1D"})
    with pytest.raises(ConfigError, match="minAge"):
        backup_properties(backup, None)


def test_worker_pods_are_bounded_by_default_and_the_spec_can_only_tighten_or_size_them() -> None:
    """A deadline, resources and a size-limited /tmp on every Job; the spec sets its own; it cannot choose the
    ServiceAccount its pods run as."""
    settings = JobSettings(image="img")
    job = build_backup_job(_backup(), "r", WINDOW, settings, run_start=NOW)
    pod = job["spec"]["template"]["spec"]
    assert job["spec"]["activeDeadlineSeconds"] == 86400
    # the chart's limits, and for cpu (which it does not limit) the installer's cap (worker.limits.max)
    assert pod["containers"][0]["resources"]["limits"] == {"memory": "1Gi", "ephemeral-storage": "2Gi", "cpu": "4"}
    assert [v["emptyDir"] for v in pod["volumes"] if v["name"] == "tmp"] == [{"sizeLimit": "1Gi"}]
    assert pod["serviceAccountName"] == "cxbackup-worker"

    own = {"activeDeadlineSeconds": 3600, "tmpSizeLimit": "256Mi", "resources": {"limits": {"memory": "300Mi"}}}
    job = build_backup_job(_backup(pod=own), "r", WINDOW, settings, run_start=NOW)
    pod = job["spec"]["template"]["spec"]
    assert job["spec"]["activeDeadlineSeconds"] == 3600
    # the limits filled in come with the chart's requests: a missing request would be taken to be the limit (a
    # cpu request of the cap, which no small node can schedule); memory, which the spec limits, stays its own
    assert pod["containers"][0]["resources"] == {
        "limits": {"memory": "300Mi", "ephemeral-storage": "2Gi", "cpu": "4"},
        "requests": {"cpu": "100m", "ephemeral-storage": "64Mi"},
    }
    assert [v["emptyDir"] for v in pod["volumes"] if v["name"] == "tmp"] == [{"sizeLimit": "256Mi"}]
    with pytest.raises(ValueError, match="serviceAccountName"):
        _backup(pod={"serviceAccountName": "namespace-admin"})


def test_private_ca_reaches_every_worker_container_and_only_when_set(tmp_path: Path) -> None:
    from cxbackup_dev.emulator import TestCA

    pem = TestCA.create(tmp_path).pem
    plain = build_backup_job(_backup(), "r", WINDOW, JobSettings(), run_start=NOW)
    assert "CXBACKUP_CA_CERTIFICATES" not in {e["name"] for e in _container(plain).get("env", [])}
    job = build_backup_job(_backup(), "r", WINDOW, JobSettings(ca_certificates=pem), run_start=NOW)
    env = {e["name"]: e for e in _container(job)["env"]}
    assert env["CXBACKUP_CA_CERTIFICATES"] == {"name": "CXBACKUP_CA_CERTIFICATES", "value": pem}


def test_operator_refuses_a_ca_setting_that_is_not_a_ca_naming_the_chart_value(tmp_path: Path) -> None:
    from cxbackup.controller.settings import load_settings
    from cxbackup.core.errors import ConfigurationError
    from cxbackup_dev.emulator import TestCA

    ca = TestCA.create(tmp_path)
    assert load_settings({"CXBACKUP_CA_CERTIFICATES": ca.pem}).jobs.ca_certificates == ca.pem.strip()
    server = ca.issue_server("srv")[0].read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----"
    with pytest.raises(ConfigurationError, match=r"security\.caCertificates .*is not a CA certificate"):
        load_settings({"CXBACKUP_CA_CERTIFICATES": server})
    with pytest.raises(ConfigurationError, match=r"security\.caCertificates .*not PEM"):
        load_settings({"CXBACKUP_CA_CERTIFICATES": "-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----"})


def test_the_installers_vendor_hosts_reach_every_worker_pod_from_the_operators_own_setting() -> None:
    """One list: the hosts the operator checks (security.vendorHosts) are given to backup, audit and export pods
    as CXBACKUP_VENDOR_HOSTS, where the worker checks them again; set even when empty (no host allowed)."""
    hosts = ("api.vendor.example", "*.s3.vendor.example")
    loaded = load_settings({"CXBACKUP_VENDOR_HOSTS": ",".join(hosts)})
    built = OperatorSettings(endpoints=EndpointPolicy(vendor_hosts=hosts))
    assert loaded.jobs.vendor_hosts == built.jobs.vendor_hosts == hosts
    export_doc = yaml.safe_load((REPO / "examples" / "exportjob.yaml").read_text())
    export_doc["metadata"].update(namespace="cc", uid="e-uid")
    export = ExportJob.model_validate(export_doc)
    args = ExportRequest.from_spec(export.spec, "x").to_args()
    for settings, value in ((built.jobs, "api.vendor.example,*.s3.vendor.example"), (JobSettings(), "")):
        jobs = {
            "run": build_backup_job(_backup(), "r1", WINDOW, settings, run_start=NOW),
            "audit": build_audit_job(_backup(), "r1", WINDOW, settings, run_start=NOW),
            "export": build_export_job(export, "r1", args, CertificateSource("rc-tls"), settings, run_start=NOW),
        }
        for what, job in jobs.items():
            env = [e for e in _container(job)["env"] if e["name"] == "CXBACKUP_VENDOR_HOSTS"]
            assert env == [{"name": "CXBACKUP_VENDOR_HOSTS", "value": value}], what

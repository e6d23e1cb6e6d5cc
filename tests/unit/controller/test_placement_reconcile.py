"""Placement through the reconcilers (controller/placement.py): each kind that mounts a backup's target reads the
claim's access modes and places its pods by them: a RecordingBackup's run and audit, a subjectAccess ExportJob, a
RecordingErasure. ReadWriteOnce: every one of them carries the claim's label and follows it to one node;
ReadWriteMany and S3: spread, never tied; ReadWriteOncePod with more than one shard: a condition and an Event
naming spec.replicas, and no Job."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from cxbackup.controller.manifests import JobSettings
from cxbackup.controller.placement import CLAIM_LABEL, HOSTNAME_KEY
from cxbackup.controller.podlimits import PodLimits
from cxbackup.controller.settings import OperatorSettings
from tests.unit.controller import test_backup_reconcile as backup_tests
from tests.unit.controller import test_erasure_reconcile as erasure_tests
from tests.unit.controller import test_export_reconcile as export_tests
from tests.unit.controller.fakes import SETTINGS

T0 = dt.datetime(2026, 11, 23, 5, 0, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)
RWO, ROX, RWX, RWOP = "ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"


def _template(job: dict[str, Any]) -> dict[str, Any]:
    template: dict[str, Any] = job["spec"]["template"]
    return template


def _together(job: dict[str, Any], claim: str) -> bool:
    """The pods carry the claim's label and must run where other pods carrying it run."""
    template = _template(job)
    terms = (template["spec"].get("affinity") or {}).get("podAffinity", {})
    required = terms.get("requiredDuringSchedulingIgnoredDuringExecution") or []
    return template["metadata"]["labels"].get(CLAIM_LABEL) == claim and required == [
        {"labelSelector": {"matchLabels": {CLAIM_LABEL: claim}}, "topologyKey": HOSTNAME_KEY}
    ]


def _untied(job: dict[str, Any]) -> bool:
    template = _template(job)
    return "affinity" not in template["spec"] and CLAIM_LABEL not in template["metadata"]["labels"]


def _spread(job: dict[str, Any]) -> list[dict[str, Any]]:
    spread: list[dict[str, Any]] = _template(job)["spec"].get("topologySpreadConstraints") or []
    return spread


# ---- RecordingBackup ---------------------------------------------------------------------------------------


def _backup(modes: tuple[str, ...] | None, replicas: int = 3) -> backup_tests.Harness:
    h = backup_tests.Harness()
    h.spec["replicas"] = replicas
    if modes is None:
        h.spec["target"] = {"s3": {"bucket": "archive", "credentials": {"name": "s3"}}}
    else:
        h.cluster.put_pvc("backup", access_modes=modes)
    return h


@pytest.mark.parametrize("modes", [(RWO,), (RWO, ROX), (ROX,)])
def test_a_readwriteonce_target_puts_every_shard_on_the_volumes_node(modes: tuple[str, ...]) -> None:
    h = _backup(modes)
    assert [e.reason for e in h.tick(T0)] == ["RunStarted"]
    job = h.cluster.job(h.run_job())
    assert _together(job, "backup")
    assert _spread(job) == []  # spreading would fight the affinity
    assert CLAIM_LABEL not in job["metadata"]["labels"]  # on the pods: the Job's own labels stay the run's


@pytest.mark.parametrize("modes", [(RWX,), (RWO, RWX), (RWX, ROX), None], ids=["RWX", "RWO+RWX", "RWX+ROX", "S3"])
def test_a_readwritemany_or_s3_target_spreads_the_shards_of_one_run(modes: tuple[str, ...] | None) -> None:
    h = _backup(modes)
    assert [e.reason for e in h.tick(T0)] == ["RunStarted"]
    job = h.cluster.job(h.run_job())
    assert _untied(job)
    [constraint] = _spread(job)
    assert constraint["topologyKey"] == HOSTNAME_KEY and constraint["whenUnsatisfiable"] == "ScheduleAnyway"
    assert constraint["maxSkew"] == 1
    # only this run's pods count: its selector is the run's own labels, run id included
    assert constraint["labelSelector"]["matchLabels"] == job["metadata"]["labels"]
    assert job["metadata"]["labels"]["cxbackup.io/run"]
    assert all(_template(job)["metadata"]["labels"][k] == v for k, v in job["metadata"]["labels"].items())


def test_one_shard_on_readwritemany_has_nothing_to_spread() -> None:
    h = _backup((RWX,), replicas=1)
    h.tick(T0)
    job = h.cluster.job(h.run_job())
    assert _untied(job) and _spread(job) == []


def test_the_users_node_selector_and_tolerations_stay_as_they_are() -> None:
    h = _backup((RWO,))
    h.spec["pod"] = {"nodeSelector": {"disk": "ssd"}, "tolerations": [{"key": "d", "operator": "Exists"}]}
    limits = PodLimits(toleration_keys=("d",), node_selector_keys=("disk",))
    settings = OperatorSettings(endpoints=SETTINGS.endpoints, jobs=JobSettings(limits=limits))
    assert [e.reason for e in h.tick(T0, settings)] == ["RunStarted"]
    job = h.cluster.job(h.run_job())
    spec = _template(job)["spec"]
    assert spec["nodeSelector"] == {"disk": "ssd"} and spec["tolerations"] == [{"key": "d", "operator": "Exists"}]
    assert _together(job, "backup")


def test_readwriteoncepod_with_more_than_one_shard_is_refused_naming_spec_replicas() -> None:
    h = _backup((RWOP,), replicas=3)
    events = h.tick(T0)
    assert h.cluster.jobs == {} and h.cluster.configmaps == {}
    assert h.status["phase"] == "Invalid"
    ready = h.cond("Ready")
    assert ready["status"] == "False" and ready["reason"] == "AccessModeConflict"
    assert ready["message"].startswith("spec.replicas: 3 pods cannot all mount PersistentVolumeClaim ns/backup")
    assert "set spec.replicas: 1" in ready["message"] and "ReadWriteMany" in ready["message"]
    assert [(e.warning, e.reason, e.message) for e in events] == [(True, "AccessModeConflict", ready["message"])]
    assert h.tick(T0 + MINUTE) == []  # said once
    h.spec["replicas"] = 1
    h.generation += 1
    assert [e.reason for e in h.tick(T0 + 2 * MINUTE)] == ["RunStarted"]
    job = h.cluster.job(h.run_job())
    assert _untied(job) and _spread(job) == []


def test_the_audit_follows_a_readwriteonce_volume_too() -> None:
    h = _backup((RWO,))
    h.spec["audit"] = {"enabled": True, "schedule": "0 6 * * *"}
    h.status |= {"lastRecordingEndTime": "2026-11-23T00:00:00Z", "lastRunGeneration": 1, "phase": "Succeeded"}
    assert "AuditStarted" in [e.reason for e in h.tick(T0)]
    [audit] = [n for n in h.cluster.job_names() if "audit" in n]
    job = h.cluster.job(audit)
    assert _together(job, "backup") and _spread(job) == []
    assert _template(job)["metadata"]["labels"]["app.kubernetes.io/component"] == "backup-audit"


def test_the_audit_of_a_readwritemany_volume_is_not_tied() -> None:
    h = _backup((RWX,))
    h.spec["audit"] = {"enabled": True, "schedule": "0 6 * * *"}
    h.status |= {"lastRecordingEndTime": "2026-11-23T00:00:00Z", "lastRunGeneration": 1, "phase": "Succeeded"}
    h.tick(T0)
    [audit] = [n for n in h.cluster.job_names() if "audit" in n]
    job = h.cluster.job(audit)
    assert _untied(job) and _spread(job) == []  # one pod


# ---- ExportJob (subjectAccess) and RecordingErasure ---------------------------------------------------------


def _export(modes: tuple[str, ...]) -> export_tests.Harness:
    h = export_tests._subject_access(export_tests.Harness())
    h.cluster.put_pvc("recordings-backup", access_modes=modes)
    return h


def _erasure(modes: tuple[str, ...]) -> erasure_tests.Harness:
    h = erasure_tests.Harness()
    h.cluster.put_pvc("recordings-backup", access_modes=modes)
    return h


@pytest.mark.parametrize("kind", ["export", "erasure"])
def test_a_subject_access_export_and_an_erasure_join_the_pods_of_a_readwriteonce_claim(kind: str) -> None:
    h = _export((RWO,)) if kind == "export" else _erasure((RWO,))
    h.tick(erasure_tests.T0)
    [name] = h.cluster.job_names()
    job = h.cluster.job(name)
    # the same label and term as the backup's shards: they all land on the node the volume is attached to
    assert _together(job, "recordings-backup") and _spread(job) == []


@pytest.mark.parametrize("kind", ["export", "erasure"])
@pytest.mark.parametrize("modes", [(RWX,), (RWOP,)])
def test_a_subject_access_export_and_an_erasure_are_not_tied_on_other_volumes(
    kind: str, modes: tuple[str, ...]
) -> None:
    h = _export(modes) if kind == "export" else _erasure(modes)
    h.tick(erasure_tests.T0)
    [name] = h.cluster.job_names()  # one pod: a ReadWriteOncePod claim is no reason to refuse it
    job = h.cluster.job(name)
    assert _untied(job) and _spread(job) == []


def test_readonlymany_frees_only_the_read_only_mount() -> None:
    """The export mounts the target read-only: ReadOnlyMany lets it go to any node; the erasure writes, so it
    stays with the writers."""
    h = _export((RWO, ROX))
    h.tick(erasure_tests.T0)
    [name] = h.cluster.job_names()
    assert _untied(h.cluster.job(name))
    e = _erasure((RWO, ROX))
    e.tick(erasure_tests.T0)
    [name] = e.cluster.job_names()
    assert _together(e.cluster.job(name), "recordings-backup")

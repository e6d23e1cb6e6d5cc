"""The installer's caps on worker pods (chart values worker.limits, worker.allowedTolerationKeys,
worker.allowedNodeSelectorKeys): a resource whose spec.pod asks for more is refused with Ready=False
(PodSettingsNotAllowed) and one Warning Event naming the field, the value and the chart value, and no Job
is created; every worker container gets a limit for each capped resource."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from cxbackup.api.common import PodSettings
from cxbackup.controller.manifests import JobSettings, worker_pod_spec
from cxbackup.controller.podlimits import PodLimits
from cxbackup.controller.references import Blocked, EndpointPolicy
from cxbackup.controller.settings import OperatorSettings, load_settings
from cxbackup.core.errors import ConfigurationError
from tests.unit.controller.test_backup_reconcile import T0
from tests.unit.controller.test_backup_reconcile import Harness as BackupHarness
from tests.unit.controller.test_erasure_reconcile import T0 as ERASURE_T0
from tests.unit.controller.test_erasure_reconcile import Harness as ErasureHarness
from tests.unit.controller.test_export_reconcile import T0 as EXPORT_T0
from tests.unit.controller.test_export_reconcile import Harness as ExportHarness
from tests.unit.controller.test_export_reconcile import _result_pod as export_result_pod

MINUTE = dt.timedelta(minutes=1)
VENDOR_HOSTS = EndpointPolicy(vendor_hosts=("vendor.example", "example.com"))


def settings(limits: PodLimits | None = None) -> OperatorSettings:
    return OperatorSettings(jobs=JobSettings(limits=limits or PodLimits()), endpoints=VENDOR_HOSTS)


@pytest.mark.parametrize(
    ("pod", "names"),
    [
        ({"resources": {"limits": {"memory": "100Gi"}}},
         ["spec.pod.resources.limits.memory: 100Gi is more than the installer allows (8Gi",
          "worker.limits.max.memory"]),
        ({"resources": {"requests": {"cpu": "64"}, "limits": {"memory": "1Gi"}}},
         ["spec.pod.resources.requests.cpu: 64 is more than the installer allows (4", "worker.limits.max.cpu"]),
        ({"resources": {"limits": {"ephemeral-storage": "1Ti"}}},
         ["spec.pod.resources.limits.ephemeral-storage: 1Ti", "worker.limits.max.ephemeral-storage"]),
        ({"resources": {"limits": {"nvidia.com/gpu": "1"}}},
         ["spec.pod.resources.limits.nvidia.com/gpu: worker pods may ask only for cpu, ephemeral-storage, memory"]),
        ({"resources": {"requests": {"memory": "2Gi"}}},
         ["spec.pod.resources.requests.memory: 2Gi is more than its limit (1Gi)"]),
        ({"tmpSizeLimit": "100000Gi"},
         ["spec.pod.tmpSizeLimit: 100000Gi is more than the installer allows (8Gi", "worker.limits.maxTmpSize"]),
        ({"tolerations": [{"operator": "Exists"}]},
         ["spec.pod.tolerations[0]: a toleration with no key (it tolerates every taint) is not allowed",
          "worker.allowedTolerationKeys"]),
        ({"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]},
         ["spec.pod.tolerations[0]: a toleration with key 'node-role.kubernetes.io/control-plane' is not allowed",
          "taint keys none"]),
        ({"nodeSelector": {"kubernetes.io/hostname": "control-plane-1"}},
         ["spec.pod.nodeSelector.kubernetes.io/hostname: selecting nodes by 'kubernetes.io/hostname' is not allowed",
          "worker.allowedNodeSelectorKeys"]),
    ],
)  # fmt: skip
def test_a_backup_asking_for_more_than_the_installer_allows_is_refused_naming_the_field(
    pod: dict[str, Any], names: list[str]
) -> None:
    h = BackupHarness()
    h.spec["pod"] = pod
    events = h.tick(T0, settings())
    assert h.cluster.jobs == {} and h.cluster.configmaps == {}
    assert h.status["phase"] == "Blocked"
    ready = h.cond("Ready")
    assert ready["status"] == "False" and ready["reason"] == "PodSettingsNotAllowed"
    for name in names:
        assert name in ready["message"], ready["message"]
    assert [(e.warning, e.reason, e.message) for e in events] == [(True, "PodSettingsNotAllowed", ready["message"])]
    assert h.tick(T0 + MINUTE, settings()) == []  # not announced again while it stays so


def test_what_the_installer_allows_is_accepted_and_every_container_gets_limits() -> None:
    limits = PodLimits(toleration_keys=("dedicated",), node_selector_keys=("pool",))
    h = BackupHarness()
    h.spec["pod"] = {
        "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}},  # no limits given
        "tmpSizeLimit": "8Gi",
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "backup", "effect": "NoSchedule"}],
        "nodeSelector": {"pool": "backup"},
    }
    assert [e.reason for e in h.tick(T0, settings(limits))] == ["RunStarted"]
    pod = h.cluster.job(h.run_job())["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    # the chart's default limits where it has one, else the cap
    assert resources["limits"] == {"memory": "1Gi", "ephemeral-storage": "2Gi", "cpu": "4"}
    # its own requests, and the chart's for the one resource it neither requests nor limits (not the limit filled in)
    assert resources["requests"] == {"cpu": "500m", "memory": "256Mi", "ephemeral-storage": "64Mi"}
    assert pod["tolerations"][0]["key"] == "dedicated" and pod["nodeSelector"] == {"pool": "backup"}
    assert {v["name"]: v for v in pod["volumes"]}["tmp"]["emptyDir"] == {"sizeLimit": "8Gi"}


def test_the_chart_defaults_get_a_limit_for_every_capped_resource() -> None:
    h = BackupHarness()
    assert [e.reason for e in h.tick(T0, settings())] == ["RunStarted"]
    resources = h.cluster.job(h.run_job())["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["limits"] == {"memory": "1Gi", "ephemeral-storage": "2Gi", "cpu": "4"}


def test_an_export_asking_for_a_huge_tmp_is_refused_naming_the_field() -> None:
    h = ExportHarness()
    h.spec["pod"] = {"tmpSizeLimit": "100000Gi"}
    events = h.tick(dt.datetime(2026, 8, 25, 0, 15, tzinfo=dt.UTC), settings())
    assert h.cluster.jobs == {}
    assert h.cond("Ready")["reason"] == "PodSettingsNotAllowed"
    assert "spec.pod.tmpSizeLimit: 100000Gi" in h.cond("Ready")["message"]
    assert [e.reason for e in events] == ["PodSettingsNotAllowed"]


def test_no_job_over_the_caps_is_ever_built() -> None:
    """Whatever a handler forgot to check first, the one builder of worker pods refuses."""
    with pytest.raises(Blocked, match=r"spec\.pod\.tolerations"):
        worker_pod_spec(PodSettings(tolerations=[{"operator": "Exists"}]), JobSettings(), {"name": "c"}, [])


def test_the_caps_come_from_the_chart_values_and_the_defaults_must_fit_them() -> None:
    settings = load_settings(
        {
            "CXBACKUP_WORKER_MAX_RESOURCES": '{"cpu": "2", "memory": "2Gi", "ephemeral-storage": "4Gi"}',
            "CXBACKUP_WORKER_MAX_TMP_SIZE": "2Gi",
            "CXBACKUP_WORKER_TOLERATION_KEYS": "dedicated, gpu",
            "CXBACKUP_WORKER_NODE_SELECTOR_KEYS": "pool",
        }
    )
    assert settings.jobs.limits == PodLimits(
        max_resources={"cpu": "2", "memory": "2Gi", "ephemeral-storage": "4Gi"},
        max_tmp_size="2Gi",
        toleration_keys=("dedicated", "gpu"),
        node_selector_keys=("pool",),
    )
    # the chart's default worker.resources ask for ephemeral-storage, which worker.limits.max does not name
    with pytest.raises(
        ConfigurationError,
        match=r"worker defaults are over its own caps: .*worker\.resources\.limits\.ephemeral-storage: worker pods "
        "may ask only for memory",
    ):
        load_settings({"CXBACKUP_WORKER_MAX_RESOURCES": '{"memory": "2Gi"}'})
    with pytest.raises(ConfigurationError, match=r"worker\.tmpSizeLimit: 1Gi is more than the installer allows"):
        load_settings({"CXBACKUP_WORKER_MAX_TMP_SIZE": "512Mi"})
    with pytest.raises(ConfigurationError, match=r"worker\.limits\.max\.memory .* is not a quantity"):
        load_settings({"CXBACKUP_WORKER_MAX_RESOURCES": '{"memory": "lots"}'})


@pytest.mark.parametrize(
    ("pod", "field"),
    [
        ({"tmpSizeLimit": "100000Gi"}, "spec.pod.tmpSizeLimit: 100000Gi"),
        ({"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]},
         "spec.pod.tolerations[0]"),
        ({"resources": {"limits": {"nvidia.com/gpu": "1"}}}, "spec.pod.resources.limits.nvidia.com/gpu"),
    ],
)  # fmt: skip
def test_an_erasure_over_a_cap_creates_neither_its_configmap_nor_its_job(pod: dict[str, Any], field: str) -> None:
    h = ErasureHarness()
    h.spec["pod"] = pod
    events = h.tick(ERASURE_T0, settings())
    assert h.cluster.jobs == {} and h.cluster.configmaps == {}
    ready = h.cond("Ready")
    assert ready["status"] == "False" and ready["reason"] == "PodSettingsNotAllowed"
    assert field in ready["message"], ready["message"]
    assert [(e.warning, e.reason) for e in events] == [(True, "PodSettingsNotAllowed")]


def test_an_exports_retention_sweep_over_a_cap_is_refused_not_started() -> None:
    """The sweep's pod has the ExportJob's own spec.pod: changed over a cap after a run, the sweep is refused
    with the same condition instead of failing the reconciliation."""
    h = ExportHarness()
    h.tick(EXPORT_T0, settings())
    [run] = h.cluster.job_names()
    h.cluster.add_pod(run, export_result_pod(run, artifacts=1))
    h.cluster.finish_job(run, succeeded=True, at=EXPORT_T0 + 4 * MINUTE)
    h.tick(EXPORT_T0 + 5 * MINUTE, settings())
    h.spec["pod"] = {"nodeSelector": {"kubernetes.io/hostname": "control-plane-1"}}
    h.generation += 1
    events = h.tick(EXPORT_T0 + dt.timedelta(days=31), settings())
    assert h.cluster.job_names() == [run]
    ready = h.cond("Ready")
    assert ready["reason"] == "PodSettingsNotAllowed"
    assert "spec.pod.nodeSelector.kubernetes.io/hostname" in ready["message"], ready["message"]
    assert "PodSettingsNotAllowed" in [e.reason for e in events]

"""Every counter series of an object exists at 0 from its first reconcile, so dashboards show 0 rather than
no data and the first failure is an increase that increase() and the alerts can see."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY

from cxbackup import metrics

CASES: list[tuple[Callable[[str, str], None], list[tuple[str, dict[str, str]]]]] = [
    (
        metrics.initialize_backup,
        [
            ("cxbackup_backup_runs_total", {"result": "failed"}),
            ("cxbackup_backup_runs_total", {"result": "succeeded"}),
            ("cxbackup_backup_runs_skipped_total", {}),
            ("cxbackup_backup_recordings_total", {"outcome": "downloaded"}),
            ("cxbackup_backup_recordings_total", {"outcome": "failed"}),
            ("cxbackup_backup_bytes_total", {}),
            ("cxbackup_backup_run_duration_seconds_count", {}),
        ],
    ),
    (
        metrics.initialize_certificate,
        [
            ("cxbackup_certificate_rotations_total", {"result": "failed"}),
            ("cxbackup_certificate_rotations_total", {"result": "succeeded"}),
        ],
    ),
    (
        metrics.initialize_export,
        [
            ("cxbackup_export_runs_total", {"result": "failed"}),
            ("cxbackup_export_artifacts_expired_total", {}),
            ("cxbackup_export_duration_seconds_count", {}),
        ],
    ),
]


@pytest.mark.parametrize(("initialize", "series"), CASES)
def test_initialize_exports_every_counter_of_the_object_at_zero(
    initialize: Callable[[str, str], None], series: list[tuple[str, dict[str, str]]]
) -> None:
    ns, name = f"ns-{uuid.uuid4().hex[:8]}", "obj"
    labels = {"namespace": ns, "name": name}
    assert [REGISTRY.get_sample_value(metric, {**labels, **extra}) for metric, extra in series] == [None] * len(series)
    initialize(ns, name)
    initialize(ns, name)  # idempotent
    assert [REGISTRY.get_sample_value(metric, {**labels, **extra}) for metric, extra in series] == [0.0] * len(series)

"""The operator installed per namespace (the chart's default) works within its RBAC: it never asks for what
it may not have (listing namespaces), so nothing it does depends on a refusal being retried."""

from __future__ import annotations

import pytest

from tests.security.installed import InstalledChart

pytestmark = pytest.mark.integration


def test_the_per_namespace_operator_never_asks_to_list_namespaces(chart_defaults: InstalledChart) -> None:
    """A namespaced operator does not try to list namespaces (it would be refused, and retry)."""
    ns = chart_defaults.tenant_namespace()
    generate = {"commonName": "Rec", "country": "US", "state": "CA", "organization": "Org"}
    cert = {"apiVersion": "cxbackup.io/v1alpha1", "kind": "RecordingCertificate", "metadata": {"name": "probe"},
            "spec": {"generate": generate}}  # fmt: skip
    chart_defaults.apply(ns, cert)
    chart_defaults.wait_for("rcert", ns, "probe", lambda b: bool((b.get("status") or {}).get("conditions")))
    log = chart_defaults.operator_log()
    assert "created keyring Secret" in log
    assert 'cannot list resource "namespaces"' not in log

"""kopf's settings as the operator configures them for its two installations."""

from __future__ import annotations

import kopf

from cxbackup.controller.main import OperatorOptions, _configure


def test_per_namespace_the_operator_never_lists_namespaces() -> None:
    """Per namespace it may not list namespaces (RBAC): kopf must not scan for them, or it retries for about
    a minute before it starts."""
    settings = kopf.OperatorSettings()
    _configure(settings, OperatorOptions(namespaces=["team-a", "team-b"]))
    assert settings.scanning.disabled
    assert not settings.peering.clusterwide


def test_cluster_wide_the_operator_scans_namespaces() -> None:
    settings = kopf.OperatorSettings()
    _configure(settings, OperatorOptions())
    assert not settings.scanning.disabled
    assert settings.peering.clusterwide

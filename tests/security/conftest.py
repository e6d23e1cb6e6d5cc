"""Fixtures of the security suite: helm, and the chart installed on a real API server with the operator
running as its own ServiceAccount, in the chart's default values and hardened (see installed.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cxbackup_dev.localcluster.stack import build_helm, helm_env
from tests.integration.helm_fixtures import *  # noqa: F403
from tests.security.installed import InstalledChart, installed

VENDOR_HOST = "vendor.example.com"
"""The one vendor host the hardened installation names (`security.vendorHosts`)."""


@pytest.fixture(scope="package")
def chart_defaults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InstalledChart]:
    """The chart in its default values, but for the namespaces it watches (the image is never pulled: there
    is no node)."""
    home = tmp_path_factory.mktemp("defaults")
    yield from installed(home, build_helm(), helm_env(home / "helm"))


@pytest.fixture(scope="package")
def chart_hardened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InstalledChart]:
    """The chart installed as docs/security.md tells a production installer to: the vendor's host named
    (`VENDOR_HOST`)."""
    home = tmp_path_factory.mktemp("hardened")
    hosts = ["--set-json", f'security.vendorHosts=["{VENDOR_HOST}"]']
    yield from installed(home, build_helm(), helm_env(home / "helm"), *hosts)

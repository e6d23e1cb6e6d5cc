"""The e2e tier's install is the hardened mode of docs/security.md, and it holds on the real cluster:
the operator reaches Secrets only in the namespaces it watches, plain HTTP is refused, and the vendor
endpoints are HTTPS signed by a private CA that only the chart's security.caCertificates makes trusted."""

from __future__ import annotations

import pytest

from cxbackup_dev.emulator import Emulator
from cxbackup_dev.localcluster.stack import EMULATOR_HOSTS, LocalStack

pytestmark = pytest.mark.e2e


def _can(stack: LocalStack, verb: str, resource: str, namespace: str) -> bool:
    account = f"system:serviceaccount:{stack.operator_namespace}:{stack.release}"
    proc = stack.cp.kubectl("auth", "can-i", verb, resource, "-n", namespace, "--as", account, check=False)
    return proc.stdout.strip() == "yes"


def test_operator_reaches_secrets_only_in_watched_namespaces(stack: LocalStack) -> None:
    watched = stack.pool[-1]
    assert _can(stack, "get", "secrets", watched)
    assert _can(stack, "create", "jobs", watched)
    stack.create_namespace("not-watched")
    for namespace in ("kube-system", "default", "not-watched"):
        assert not _can(stack, "get", "secrets", namespace), namespace
        assert not _can(stack, "create", "jobs", namespace), namespace
    assert not _can(stack, "list", "secrets", watched)  # never list, even where it may get


def test_chart_values_are_the_hardened_ones(stack: LocalStack, emulator: Emulator) -> None:
    assert stack.values["rbac"] == {"clusterWide": False}
    assert stack.values["security"]["allowPlainHttp"] is False
    deployment = stack.get("deployment", stack.operator_namespace, stack.release)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CXBACKUP_ALLOW_PLAIN_HTTP"] == "false"
    assert env["CXBACKUP_VENDOR_HOSTS"] == ",".join(EMULATOR_HOSTS)  # the chart's default names none
    assert stack.test_ca is not None and env["CXBACKUP_CA_CERTIFICATES"] == stack.test_ca.pem
    assert emulator.gws_uri_prefix.startswith("https://") and emulator.s3_endpoint.startswith("https://")

"""The worker checks the installer's vendor hosts again (CXBACKUP_VENDOR_HOSTS, set by the operator in every
worker pod): a vendor endpoint (the recording API, the export source API, a vendor S3 endpoint override) whose
host is not on the list is refused as a configuration error, naming the host, the setting and the chart value,
before any request; without the variable (a worker run by hand) no allowlist applies."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from cxbackup.backup.config import Credentials, RcbsConfig
from cxbackup.backup.connections import make_vendor_client, source_s3_options
from cxbackup.backup.errors import ConfigError
from cxbackup.cli import main
from cxbackup.core.endpoints import HostAllowlist, HostNotAllowedError, check_vendor_host, vendor_allowlist
from cxbackup.core.errors import EXIT_CONFIG
from cxbackup.core.http import HttpResponse
from cxbackup.export.errors import ExportConfigError
from cxbackup.export.source import ApiSource

API = "https://api.vendor.example/api/v2"
CREDENTIALS = {"GWS_USERNAME": "u", "GWS_PASSWORD": "p", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
WHY = ("chart value security.vendorHosts", "CXBACKUP_VENDOR_HOSTS")


def _config(**values: Any) -> RcbsConfig:
    return RcbsConfig.model_validate({"gwsUriPrefix": API, "targetDir": "/backup", **values})


def _credentials(**env: str) -> Credentials:
    return Credentials.from_env(CREDENTIALS | env)


def _refused(message: str, host: str, setting: str) -> None:
    assert f"{setting}: the host '{host}' is not one of the vendor hosts the installer allows" in message, message
    for words in WHY:
        assert words in message, message


def test_the_recording_api_on_another_host_is_refused_as_a_configuration_error() -> None:
    config = _config(gwsUriPrefix="https://collector.attacker.example/api/v2")
    with pytest.raises(ConfigError) as refused:
        make_vendor_client(config, _credentials(CXBACKUP_VENDOR_HOSTS="api.vendor.example,*.s3.vendor.example"))
    _refused(str(refused.value), "collector.attacker.example", "gwsUriPrefix")
    assert "api.vendor.example, *.s3.vendor.example" in str(refused.value)
    assert refused.value.exit_code == EXIT_CONFIG  # a configuration error: the run stops, nothing retries it


def test_the_recording_api_on_an_allowed_host_or_without_the_variable_is_accepted() -> None:
    for env in ({"CXBACKUP_VENDOR_HOSTS": "API.Vendor.Example"}, {"CXBACKUP_VENDOR_HOSTS": "*.vendor.example"}, {}):
        client = make_vendor_client(_config(), _credentials(**env))
        assert client.recordings_url.startswith(API), env


def test_set_but_empty_allows_no_vendor_host() -> None:
    with pytest.raises(ConfigError) as refused:
        make_vendor_client(_config(), _credentials(CXBACKUP_VENDOR_HOSTS=""))
    _refused(str(refused.value), "api.vendor.example", "gwsUriPrefix")
    assert "allows (none;" in str(refused.value)


def test_a_vendor_s3_endpoint_override_on_another_host_is_refused_naming_where_it_came_from() -> None:
    allowed = {"CXBACKUP_VENDOR_HOSTS": "api.vendor.example,*.s3.vendor.example"}
    config = _config(awsEndpointUrl="https://s3.attacker.example")
    with pytest.raises(ConfigError) as refused:
        source_s3_options(config, _credentials(**allowed))
    _refused(str(refused.value), "s3.attacker.example", "awsEndpointUrl")
    with pytest.raises(ConfigError) as refused:
        source_s3_options(_config(), _credentials(AWS_ENDPOINT_URL="https://127.0.0.1:9000", **allowed))
    _refused(str(refused.value), "127.0.0.1", "AWS_ENDPOINT_URL")
    ok = source_s3_options(_config(awsEndpointUrl="https://eu.s3.vendor.example"), _credentials(**allowed))
    assert ok.endpoint_url == "https://eu.s3.vendor.example"
    by_hand = source_s3_options(config, _credentials())  # no variable: no allowlist
    assert by_hand.endpoint_url == "https://s3.attacker.example"


class _NoRequests:
    """A transport that fails the test if anything is requested."""

    def get(self, url: str, headers: Mapping[str, str]) -> HttpResponse:
        raise AssertionError(f"a request was sent to {url}")


def test_the_export_source_api_on_another_host_is_refused_before_any_request() -> None:
    env = {"GWS_USERNAME": "u", "GWS_PASSWORD": "p", "CXBACKUP_VENDOR_HOSTS": "api.vendor.example"}
    with pytest.raises(ExportConfigError) as refused:
        ApiSource.from_env(env | {"CXBACKUP_EXPORT_API": "https://api.vendor.example.attacker.example/v1"},
                           transport=_NoRequests())  # fmt: skip
    _refused(str(refused.value), "api.vendor.example.attacker.example", "the API URI prefix (CXBACKUP_EXPORT_API)")
    assert refused.value.exit_code == EXIT_CONFIG
    assert ApiSource.from_env(env | {"CXBACKUP_EXPORT_API": API}, transport=_NoRequests()).prefix == API
    by_hand = {k: v for k, v in env.items() if k != "CXBACKUP_VENDOR_HOSTS"}
    other = "https://other.example/v1"
    assert ApiSource.from_env(by_hand | {"CXBACKUP_EXPORT_API": other}, transport=_NoRequests()).prefix == other


def test_an_allowlist_that_is_not_one_is_an_error_naming_the_variable() -> None:
    with pytest.raises(HostNotAllowedError, match=r"CXBACKUP_VENDOR_HOSTS \(security\.vendorHosts\): 'https://x"):
        vendor_allowlist("api.vendor.example,https://x.example/")
    with pytest.raises(ExportConfigError, match="CXBACKUP_VENDOR_HOSTS"):
        ApiSource.from_env({"CXBACKUP_EXPORT_API": API, "GWS_USERNAME": "u", "GWS_PASSWORD": "p",
                            "CXBACKUP_VENDOR_HOSTS": "*"})  # fmt: skip
    assert vendor_allowlist(None) is None
    assert vendor_allowlist(" , ") == HostAllowlist(())
    check_vendor_host("https://anything.example", None, "x")  # no allowlist: nothing refused


def test_the_download_command_stops_with_exit_code_2_naming_the_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in (CREDENTIALS | {"CXBACKUP_VENDOR_HOSTS": "api.vendor.example"}).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    config = tmp_path / "config.properties"
    config.write_text(f"gwsUriPrefix=https://api.elsewhere.example/api/v2\ntargetDir={tmp_path}/t\nmetadataOnly=true\n")
    summary = tmp_path / "summary.json"
    assert main(["download", "-config", str(config), "--summary-file", str(summary), "--progress", "none"]) == 2
    err = capsys.readouterr().err
    _refused(err, "api.elsewhere.example", "gwsUriPrefix")
    written = json.loads(summary.read_text())
    assert written["result"] == "Failed" and "api.elsewhere.example" in written["error"]

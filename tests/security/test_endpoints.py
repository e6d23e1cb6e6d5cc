"""The CRDs refuse an endpoint URL that the operator's check and the worker's HTTP client could read differently
(user info, a backslash, a fragment) at `kubectl apply`, naming the field, on a real API server."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cxbackup_dev.localcluster.controlplane import ControlPlane

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BACKUP = yaml.safe_load((REPO / "examples" / "recordingbackup.yaml").read_text())
EXPORT = yaml.safe_load((REPO / "examples" / "exportjob.yaml").read_text())
TARGET = {"s3": {"bucket": "archive", "credentials": {"name": "archive-s3"}}}

HOSTILE = [
    ("user info", "https://gws:secret@vendor.example.com/api/v2", "must not contain user info"),
    ("a backslash", "https://evil.example\\@vendor.example.com/api/v2", "must not contain a backslash"),
    ("a fragment", "https://vendor.example.com/api/v2#@evil.example", "must not have a fragment"),
]


def _apply(cp: ControlPlane, namespace: str, body: dict[str, Any]) -> tuple[int, str]:
    proc = cp.kubectl("apply", "-n", namespace, "-f", "-", input_text=json.dumps(body), check=False)
    return proc.returncode, proc.stderr


def _with(body: dict[str, Any], name: str, path: tuple[str, ...], value: Any) -> dict[str, Any]:
    copied = copy.deepcopy(body)
    copied["metadata"] = {"name": name}
    node = copied["spec"]
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return copied


@pytest.mark.parametrize(("what", "url", "says"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_the_api_server_refuses_hostile_endpoint_urls_naming_the_field(
    control_plane: ControlPlane, namespace: str, what: str, url: str, says: str
) -> None:
    s3_url = url.replace("/api/v2", "")
    cases = [
        (BACKUP, ("source", "gwsUriPrefix"), url, "spec.source.gwsUriPrefix"),
        (BACKUP, ("source", "s3EndpointUrl"), s3_url, "spec.source.s3EndpointUrl"),
        (EXPORT, ("source", "apiUriPrefix"), url, "spec.source.apiUriPrefix"),
        (EXPORT, ("store", "s3EndpointUrl"), s3_url, "spec.store.s3EndpointUrl"),
    ]
    for i, (base, path, value, field) in enumerate(cases):
        body = _with(base, f"hostile-{i}", path, value)
        if path == ("store", "s3EndpointUrl"):
            body["spec"]["store"] = {"s3": "s3://exports/out", "s3EndpointUrl": value, "s3Credentials": {"name": "s3"}}
        code, stderr = _apply(control_plane, namespace, body)
        assert code != 0, f"{field} with {what} was admitted"
        assert field in stderr and says in stderr, stderr
    target = _with(BACKUP, "hostile-target", ("target",), TARGET | {"s3": TARGET["s3"] | {"endpointUrl": url}})
    code, stderr = _apply(control_plane, namespace, target)
    assert code != 0 and "spec.target.s3.endpointUrl" in stderr and says in stderr, stderr
    # nothing was stored
    listed = control_plane.kubectl("get", "rb,ej", "-n", namespace, "-o", "name").stdout
    assert listed.strip() == ""


def test_the_api_server_admits_the_plain_forms_and_refuses_what_its_pattern_cannot_read(
    control_plane: ControlPlane, namespace: str
) -> None:
    ok = _with(BACKUP, "plain", ("source", "gwsUriPrefix"), "https://API.vendor.example.com:8443/api/v2")
    ok["spec"]["source"]["s3EndpointUrl"] = "https://[::1]:9000"
    code, stderr = _apply(control_plane, namespace, ok)
    assert code == 0, stderr
    for bad in ("https://vendor.example.com./api/v2", "https://0x7f.1/", "https://vendor.example.com /x"):
        code, stderr = _apply(control_plane, namespace, _with(BACKUP, "bad", ("source", "gwsUriPrefix"), bad))
        assert code != 0 and "spec.source.gwsUriPrefix" in stderr and "should match" in stderr, stderr
    code, stderr = _apply(control_plane, namespace, _with(BACKUP, "path", ("source", "gwsRecordingsUri"), "@evil/x"))
    assert code != 0 and "spec.source.gwsRecordingsUri" in stderr, stderr

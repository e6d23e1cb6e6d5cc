"""The cxbackup resources the operator-level tests (e2e and reliability) apply, built in one place.

Each builder returns the body of one kind with the fields every test needs, pointing at an emulator and at
what `LocalStack.prepare_namespace` creates (the Secrets gws-credentials and vendor-s3, the PVC
recordings); keyword arguments replace whole fields of `spec`.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from cxbackup.api.common import API_VERSION
from cxbackup_dev.emulator import Emulator
from cxbackup_dev.localcluster.controlplane import REPO_ROOT, ControlPlane
from cxbackup_dev.localcluster.stack import LocalStack

__all__ = [
    "apply",
    "emulator_s3",
    "example",
    "export_job",
    "generated_certificate",
    "history",
    "kubectl_apply",
    "recording_backup",
    "recording_certificate",
]

GENERATE = {"commonName": "Rec", "country": "US", "state": "California", "organization": "Org"}
"""A generated certificate's subject."""


def _body(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}


def recording_backup(emu: Emulator, name: str = "rb", **spec: Any) -> dict[str, Any]:
    """A one-shot backup of the last day of the emulator's recordings into the PVC, folder `name`."""
    base: dict[str, Any] = {
        "source": {
            "gwsUriPrefix": emu.gws_uri_prefix,
            "gwsCredentials": {"name": "gws-credentials"},
            "s3Credentials": {"name": "vendor-s3"},
            "s3EndpointUrl": emu.s3_endpoint,
            "retentionDays": 30,
        },
        "window": {"minAge": 0, "maxAge": 1},
        "target": {"pvc": {"claimName": "recordings", "subPath": name}},
        "replicas": 1,
    }
    return _body("RecordingBackup", name, base | spec)


def recording_certificate(name: str = "rc", spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """A RecordingCertificate with `spec`, by default one that generates its key pair."""
    return _body("RecordingCertificate", name, spec if spec is not None else {"generate": dict(GENERATE)})


def generated_certificate(name: str = "rc", **generate: Any) -> dict[str, Any]:
    """A RecordingCertificate that generates its key pair, subject fields replaced by `generate`."""
    return recording_certificate(name, {"generate": GENERATE | generate})


def export_job(emu: Emulator, name: str = "contacts", **spec: Any) -> dict[str, Any]:
    """A contact-history export of the last 12 hours to the certificate rc, stored in the PVC."""
    base: dict[str, Any] = {
        "type": "contactHistory",
        "source": {"apiUriPrefix": emu.gws_uri_prefix, "credentialsSecret": "gws-credentials"},
        "range": {"last": "PT12H"},
        "certificate": {"recordingCertificate": "rc"},
        "store": {"pvc": "recordings", "subPath": "exports"},
    }
    return _body("ExportJob", name, base | spec)


def example(name: str) -> dict[str, Any]:
    """A file of examples/, as a user applies it."""
    doc: dict[str, Any] = yaml.safe_load((REPO_ROOT / "examples" / name).read_text())
    return doc


def kubectl_apply(cp: ControlPlane, ns: str, doc: dict[str, Any]) -> tuple[int, str]:
    """`kubectl apply` of `doc` as the cluster admin: (exit code, what kubectl said)."""
    proc = cp.kubectl("apply", "-n", ns, "-f", "-", input_text=json.dumps(doc), check=False)
    return proc.returncode, proc.stdout + proc.stderr


def apply(stack: LocalStack, namespace: str, *bodies: dict[str, Any]) -> None:
    stack.cp.kubectl("apply", "-n", namespace, "-f", "-", input_text="\n---\n".join(json.dumps(b) for b in bodies))


def history(body: dict[str, Any]) -> list[dict[str, Any]]:
    """status.history of a RecordingBackup or an ExportJob, newest first."""
    return list(body.get("status", {}).get("history") or [])


def emulator_s3(stack: LocalStack, emu: Emulator) -> Any:
    """A boto3 client of the emulator's S3 (HTTPS, trusting the stack's test CA), with the emulator's keys:
    for tests that make a target bucket and look into it."""
    import boto3

    env = emu.env()
    assert stack.test_ca is not None
    return boto3.client(
        "s3", endpoint_url=emu.s3_endpoint, region_name="us-east-1", verify=str(stack.test_ca.cert_path),
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )  # fmt: skip

"""Builders of what the attacks of the security suite apply: a cxbackup resource, a Secret, a PVC, and the
Ready condition of a resource's status."""

from __future__ import annotations

import base64
from typing import Any

from cxbackup.api.common import API_VERSION
from tests.resources import GENERATE

__all__ = ["CREDENTIALS", "GENERATE", "pvc", "ready_condition", "resource", "secret"]

CREDENTIALS = {"cxbackup.io/credentials": "true"}
"""The label that opts a Secret in as credentials."""


def resource(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}


def secret(
    name: str, data: dict[str, bytes], labels: dict[str, str] | None = None, kind: str = "Opaque", **more: Any
) -> dict[str, Any]:
    """A Secret of `data`; `more` adds top-level fields (`immutable`) and `metadata` entries (annotations)."""
    metadata = {"name": name, "labels": labels or {}, **more.pop("metadata", {})}
    return {"apiVersion": "v1", "kind": "Secret", "type": kind, "metadata": metadata,
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}, **more}  # fmt: skip


def vendor_secrets(gws_password: bytes = b"p") -> tuple[dict[str, Any], dict[str, Any]]:
    """The vendor credentials a backup names, `gws` and `s3`, opted in as credentials."""
    return (
        secret("gws", {"GWS_USERNAME": b"u", "GWS_PASSWORD": gws_password}, CREDENTIALS),
        secret("s3", {"AWS_ACCESS_KEY_ID": b"a", "AWS_SECRET_ACCESS_KEY": b"s"}, CREDENTIALS),
    )


def pvc(name: str = "recordings", *modes: str) -> dict[str, Any]:
    """A claim of the kind a backup target names, ReadWriteOnce unless `modes` are given (never bound: there
    is no node)."""
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": list(modes or ("ReadWriteOnce",)),
                     "resources": {"requests": {"storage": "1Gi"}}}}  # fmt: skip


def ready_condition(body: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in (body.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), None)

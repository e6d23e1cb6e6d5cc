"""Generate the CustomResourceDefinitions from the pydantic models (the single source of truth).

`build_crds()` returns the CRDs as dicts; `render_crds()` returns them as YAML text keyed by file
name; `cxbackup-dev crds` writes them to crds/ and the Helm chart. pydantic's JSON Schema is turned into a
Kubernetes structural schema: references inlined, Optional unwrapped, titles dropped, `dict[str, Any]`
as preserved unknown fields, int-or-string marked, and the `x-kubernetes-*` extras kept.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from pydantic import BaseModel

from cxbackup.api.certificate import RecordingCertificateSpec, RecordingCertificateStatus
from cxbackup.api.common import BACKUPS, CERTIFICATES, ERASURES, EXPORTS, GROUP, VERSION
from cxbackup.api.erasure import RecordingErasureSpec, RecordingErasureStatus
from cxbackup.api.exportjob import ExportJobSpec, ExportJobStatus
from cxbackup.api.recordingbackup import RecordingBackupSpec, RecordingBackupStatus

__all__ = ["KINDS", "CrdKind", "build_crd", "build_crds", "render_crds", "root_schema", "structural_schema"]

Schema = dict[str, Any]


class CrdKind:
    """What a CRD needs beyond the schema: names and printer columns."""

    def __init__(
        self,
        kind: str,
        plural: str,
        short_name: str,
        description: str,
        spec: type[BaseModel],
        status: type[BaseModel],
        columns: list[dict[str, Any]],
    ) -> None:
        self.kind = kind
        self.plural = plural
        self.short_name = short_name
        self.description = description
        self.spec = spec
        self.status = status
        self.columns = columns

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"

    @property
    def file_name(self) -> str:
        return f"{GROUP}_{self.plural}.yaml"


_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}

KINDS: list[CrdKind] = [
    CrdKind(
        kind="RecordingBackup",
        plural=BACKUPS,
        short_name="rb",
        description="A backup of call recordings from the vendor cloud to a PVC or an S3 bucket, once or on "
        "a cron schedule, split over shards.",
        spec=RecordingBackupSpec,
        status=RecordingBackupStatus,
        columns=[
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Progress", "type": "string", "jsonPath": ".status.progress"},
            {"name": "Shards", "type": "integer", "jsonPath": ".spec.replicas"},
            {"name": "Last Success", "type": "date", "jsonPath": ".status.lastSuccessfulTime"},
            {"name": "Backed Up To", "type": "date", "jsonPath": ".status.lastRecordingEndTime"},
            {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule", "priority": 1},
            {"name": "Next Run", "type": "date", "jsonPath": ".status.nextScheduleTime", "priority": 1},
            {"name": "Keep For", "type": "string", "jsonPath": ".spec.retention.keepFor", "priority": 1},
            {"name": "Sweep", "type": "string", "jsonPath": ".spec.retention.sweep", "priority": 1},
            {"name": "Indexed", "type": "integer", "jsonPath": ".status.index.recordings", "priority": 1},
            _AGE,
        ],
    ),
    CrdKind(
        kind="ExportJob",
        plural=EXPORTS,
        short_name="ej",
        description="An export of contact history or of a user's chat messages (GDPR), packaged as zip in "
        "CMS enveloped-data encrypted to a certificate, kept retentionDays then deleted.",
        spec=ExportJobSpec,
        status=ExportJobStatus,
        columns=[
            {"name": "Type", "type": "string", "jsonPath": ".spec.type"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Last Success", "type": "date", "jsonPath": ".status.lastSuccessfulTime"},
            {"name": "Retention", "type": "integer", "jsonPath": ".spec.retentionDays", "priority": 1},
            _AGE,
        ],
    ),
    CrdKind(
        kind="RecordingErasure",
        plural=ERASURES,
        short_name="rerase",
        description="A request to erase one person's recordings from a RecordingBackup's target (data subject "
        "erasure): a dry run first, then, with execute, the erasure, recorded in the target's ledger.",
        spec=RecordingErasureSpec,
        status=RecordingErasureStatus,
        columns=[
            {"name": "Backup", "type": "string", "jsonPath": ".spec.recordingBackup"},
            {"name": "Request", "type": "string", "jsonPath": ".spec.request"},
            {"name": "Execute", "type": "boolean", "jsonPath": ".spec.execute"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "To Erase", "type": "integer", "jsonPath": ".status.result.toErase"},
            {"name": "Erased", "type": "integer", "jsonPath": ".status.result.erased"},
            {"name": "Held", "type": "integer", "jsonPath": ".status.result.held"},
            {"name": "Failed", "type": "integer", "jsonPath": ".status.result.failed", "priority": 1},
            _AGE,
        ],
    ),
    CrdKind(
        kind="RecordingCertificate",
        plural=CERTIFICATES,
        short_name="rcert",
        description="An RSA key and X.509 certificate used to encrypt recordings; validated, rotated before "
        "expiry, and every key it ever had kept in a keyring Secret.",
        spec=RecordingCertificateSpec,
        status=RecordingCertificateStatus,
        columns=[
            {"name": "Issued To", "type": "string", "jsonPath": ".status.issuedTo"},
            {"name": "Issued By", "type": "string", "jsonPath": ".status.issuedBy"},
            {"name": "Expires", "type": "date", "jsonPath": ".status.notAfter"},
            {"name": "Deployed Count", "type": "integer", "jsonPath": ".status.deployedCount"},
            {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
            _AGE,
        ],
    ),
]


def _resolve(node: Any, defs: dict[str, Schema]) -> Any:
    """Inline every $ref (the models have no recursive types)."""
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        merged = {**_resolve(target, defs), **_resolve(siblings, defs)}
        return merged
    return {key: _resolve(value, defs) for key, value in node.items()}


def _is_null(node: Any) -> bool:
    return isinstance(node, dict) and node.get("type") == "null"


def _clean(node: Any, *, in_properties: bool = False) -> Any:
    """Turn one resolved pydantic schema node into a structural schema node."""
    if isinstance(node, list):
        return [_clean(item) for item in node]
    if not isinstance(node, dict):
        return node
    if in_properties:
        return {name: _clean(sub) for name, sub in node.items()}
    node = dict(node)
    node.pop("title", None)
    # Optional[X]: anyOf [X, null] -> X, keeping the outer keys (description, extras).
    for combiner in ("anyOf", "oneOf"):
        options = node.get(combiner)
        if isinstance(options, list):
            non_null = [o for o in options if not _is_null(o)]
            if node.get("x-kubernetes-int-or-string"):
                node.pop(combiner)
            elif len(non_null) == 1:
                node.pop(combiner)
                inner = dict(non_null[0])
                inner.update(node)
                node = inner
            if len(non_null) < len(options) and node.get("default", 0) is None:
                node.pop("default")
    if "allOf" in node and len(node["allOf"]) == 1:
        inner = dict(node.pop("allOf")[0])
        inner.update(node)
        node = inner
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "enum" in node and "type" not in node:
        first = node["enum"][0]
        node["type"] = "integer" if isinstance(first, int) else "string"
    if node.get("default", 0) is None:
        node.pop("default")
    extra_props = node.get("additionalProperties")
    if "properties" in node:
        node["properties"] = _clean(node["properties"], in_properties=True)
        node.pop("additionalProperties", None)
        node["type"] = "object"
    elif isinstance(extra_props, dict):
        if extra_props in ({}, {"type": "object", "additionalProperties": True}) or not extra_props:
            node.pop("additionalProperties")
            node["x-kubernetes-preserve-unknown-fields"] = True
        else:
            node["additionalProperties"] = _clean(extra_props)
    elif extra_props is True:
        node.pop("additionalProperties")
        node["x-kubernetes-preserve-unknown-fields"] = True
    elif extra_props is False:
        node.pop("additionalProperties")
    if node.get("x-kubernetes-preserve-unknown-fields") and "type" not in node:
        node["type"] = "object"
    if "items" in node:
        node["items"] = _clean(node["items"])
    if node.get("x-kubernetes-int-or-string"):
        node.pop("type", None)
    node.pop("title", None)
    return node


def structural_schema(model: type[BaseModel]) -> Schema:
    """The structural OpenAPI v3 schema of a model, as a CRD needs it."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    schema = _clean(_resolve(raw, defs))
    assert isinstance(schema, dict)
    return schema


def root_schema(kind: CrdKind) -> Schema:
    """The CRD's openAPIV3Schema: apiVersion, kind, metadata, spec and status, and the spec model's root rules
    (`crd_root_validations`: rules on the whole object, e.g. its name)."""
    schema: Schema = {
        "type": "object",
        "description": kind.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "cxbackup.io/v1alpha1"},
            "kind": {"type": "string", "description": kind.kind},
            "metadata": {"type": "object"},
            "spec": structural_schema(kind.spec),
            "status": structural_schema(kind.status),
        },
    }
    rules = [dict(rule) for rule in getattr(kind.spec, "crd_root_validations", ())]
    if rules:
        schema["x-kubernetes-validations"] = rules
    return schema


def build_crd(kind: CrdKind) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": kind.crd_name,
            "annotations": {"cxbackup.io/generated-by": "cxbackup-dev crds (from the pydantic models)"},
            "labels": {"app.kubernetes.io/part-of": "cxbackup"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": [kind.short_name],
                "categories": ["cxbackup"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": kind.columns,
                    "schema": {"openAPIV3Schema": root_schema(kind)},
                }
            ],
        },
    }


def build_crds() -> list[dict[str, Any]]:
    return [build_crd(kind) for kind in KINDS]


def render_crds() -> dict[str, str]:
    """YAML text of each CRD, keyed by its file name."""
    header = "# Generated by `cxbackup-dev crds` from operator/cxbackup/api; do not edit by hand.\n"
    return {kind.file_name: header + yaml.safe_dump(build_crd(kind), sort_keys=False, width=120) for kind in KINDS}

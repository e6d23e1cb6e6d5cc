"""Types shared by the custom resources: the base model, references, conditions, pod settings.

Only types live here (STYLE.md: "types hold only types"); field descriptions become `kubectl explain`
text through the generated CRDs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from cxbackup.core.endpoints import ENDPOINT_URL_PATTERN, PATH_PATTERN, PROXY_HOST_PATTERN
from cxbackup.core.times import ISO_DURATION_PATTERN

__all__ = [
    "API_VERSION",
    "API_VERSION",
    "BACKUPS",
    "CERTIFICATES",
    "CREDENTIALS_LABEL",
    "ENDPOINT_URL",
    "ENDPOINT_URL_MAX_LENGTH",
    "ERASURES",
    "EXPORTS",
    "GROUP",
    "GROUP",
    "ISO_DURATION_PATTERN",
    "SUB_PATH_PATTERN",
    "SUB_PATH_RULES",
    "URI_PATH",
    "VERSION",
    "VERSION",
    "CamelModel",
    "Condition",
    "ConditionStatus",
    "PodSettings",
    "ProxySettings",
    "S3CredentialsRef",
    "SecretKeyRef",
]

GROUP = "cxbackup.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
# The plural (the API path segment) of each kind, used by the operator, the worker and the CRDs.
BACKUPS = "recordingbackups"
EXPORTS = "exportjobs"
CERTIFICATES = "recordingcertificates"
ERASURES = "recordingerasures"

# ISO_DURATION_PATTERN (cxbackup.core.times): P[n]Y[n]M[n]DT[n]H[n]M[n]S, RCBS's form, plus weeks. RE2 and
# Rust regex have no look-around, so "P" and "PT" alone pass it; the CEL rules and the engines reject them.


class CamelModel(BaseModel):
    """Base for every API type: camelCase on the wire, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=False,
    )

    crd_root_validations: ClassVar[tuple[dict[str, Any], ...]] = ()
    """Rules (x-kubernetes-validations) a kind's spec model adds at the root of its CRD's schema, where
    `self` is the whole object (its metadata included): the CRD generator puts them there."""


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(CamelModel):
    """The latest observation of one aspect of the resource, as in metav1.Condition."""

    type: str = Field(description="Type of condition, e.g. Ready, Running, Degraded.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="One CamelCase word saying why the condition is so.")
    message: str = Field(default="", description="A human-readable explanation, with the fix where known.")
    last_transition_time: datetime | None = Field(
        default=None, description="When the status last changed (not when it was last checked)."
    )
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this condition was computed from."
    )


class SecretKeyRef(CamelModel):
    """A Secret in the resource's namespace and the keys to read from it."""

    name: str = Field(min_length=1, max_length=253, description="Name of the Secret (same namespace).")


# Endpoint URLs (cxbackup.core.endpoints): the pattern admits only the one syntax the operator's check and the
# worker's HTTP client read alike; the rules name the usual mistakes in words (the API server reports both).
# Both are for the API server only (json_schema_extra, not pydantic's own `pattern`): the operator checks the
# same syntax itself (controller.references.endpoint_problem) and reports a condition naming the field, also
# for a resource stored before the CRD had the pattern (Helm never upgrades CRDs).
ENDPOINT_URL_MAX_LENGTH = 2048
ENDPOINT_URL: dict[str, Any] = {
    "pattern": ENDPOINT_URL_PATTERN,
    "x-kubernetes-validations": [
        {
            "rule": "!self.contains('@')",
            "message": "must not contain user info ('@'): credentials come only from Secrets",
        },
        {
            "rule": "!self.contains('\\\\')",
            "message": "must not contain a backslash (URL parsers disagree on where its host ends)",
        },
        {"rule": "!self.contains('#')", "message": "must not have a fragment ('#')"},
        {"rule": "!self.contains('?')", "message": "must not have a query ('?')"},
        {"rule": "!self.contains('%')", "message": "must not contain percent-encoding ('%')"},
    ],
}
"""The CRD schema of every endpoint URL field (with max_length=ENDPOINT_URL_MAX_LENGTH)."""
URI_PATH: dict[str, Any] = {"pattern": PATH_PATTERN}
"""The CRD schema of a path the worker appends to an endpoint (gwsRecordingsUri, gwsSettingsUri)."""


class ProxySettings(CamelModel):
    """An HTTP proxy."""

    host: str = Field(
        min_length=1,
        max_length=300,
        description="Proxy host name or IP address ([IPv6] in brackets), optionally after http://.",
        json_schema_extra={"pattern": PROXY_HOST_PATTERN},
    )
    port: int = Field(ge=1, le=65535, description="Proxy port.")


CREDENTIALS_LABEL = "cxbackup.io/credentials"
"""The label (value "true") that opts a Secret in as credentials a cxbackup resource may name."""


class S3CredentialsRef(CamelModel):
    """A Secret holding S3 credentials under the fixed keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY,
    labelled cxbackup.io/credentials=true."""

    name: str = Field(
        min_length=1,
        max_length=253,
        description="Name of the Secret (same namespace), labelled cxbackup.io/credentials=true, with the keys "
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.",
    )

    @property
    def access_key_id_key(self) -> str:
        return "AWS_ACCESS_KEY_ID"

    @property
    def secret_access_key_key(self) -> str:
        return "AWS_SECRET_ACCESS_KEY"


class PodSettings(CamelModel):
    """How the worker pods of a run are scheduled and sized. They always run as the chart's worker account
    (which may only patch the status of its own resource): a resource cannot choose another."""

    resources: dict[str, Any] | None = Field(
        default=None,
        description="Container resources (requests/limits), as in a Pod spec.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    node_selector: dict[str, str] | None = Field(default=None, description="Node selector for worker pods.")
    tolerations: list[dict[str, Any]] | None = Field(
        default=None,
        description="Tolerations for worker pods, as in a Pod spec.",
        json_schema_extra={"items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
    )
    active_deadline_seconds: int | None = Field(
        default=None,
        ge=60,
        le=7 * 86400,
        description="Longest a run's Job may take before Kubernetes stops it (default: the chart's "
        "worker.activeDeadlineSeconds, 24 hours).",
    )
    tmp_size_limit: str | None = Field(
        default=None,
        pattern=r"^[0-9]+(Ki|Mi|Gi)$",
        description="Size limit of the worker pod's /tmp, an emptyDir (default: the chart's worker.tmpSizeLimit, 1Gi).",
    )


# A folder inside a volume (RecordingBackup target.pvc.subPath, ExportJob store.subPath): relative, '/'
# between segments, no empty, '.' or '..' segment, no backslash, no control character. The pattern says it all
# (the operator reads every resource through it); the CEL rules say it in words.
_SUB_PATH_SEGMENT = r"(?:[^/\\.\x00-\x1f][^/\\\x00-\x1f]*|\.[^/\\.\x00-\x1f][^/\\\x00-\x1f]*|\.\.[^/\\\x00-\x1f]+)"
SUB_PATH_PATTERN = rf"^{_SUB_PATH_SEGMENT}(?:/{_SUB_PATH_SEGMENT})*$"
SUB_PATH_RULES: dict[str, Any] = {
    "x-kubernetes-validations": [
        {"rule": "!self.startsWith('/')", "message": "must be relative to the volume (no leading '/')"},
        {"rule": "!self.contains('\\\\')", "message": "must not contain a backslash; use '/' between folders"},
        {
            "rule": "!self.split('/').exists(p, p == '' || p == '.' || p == '..')",
            "message": "must not have an empty, '.' or '..' segment",
        },
    ]
}
"""The CEL rules of every subPath field, with SUB_PATH_PATTERN."""

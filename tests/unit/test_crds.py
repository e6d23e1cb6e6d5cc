"""The CRDs in crds/ and the Helm chart are exactly what the pydantic models generate."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cxbackup_dev.crdgen import KINDS, build_crds, render_crds

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("folder", ["crds", "helm/cxbackup/crds"])
def test_generated_crds_are_committed(folder: str) -> None:
    for file_name, text in render_crds().items():
        path = REPO / folder / file_name
        assert path.exists(), f"{path} missing: run `make crds`"
        assert path.read_text() == text, f"{path} differs from the API models: run `make crds`"


def _walk(node: object, path: str = "") -> list[str]:
    """Paths of constructs a structural schema forbids or that the generator should have removed."""
    bad: list[str] = []
    if isinstance(node, dict):
        for key in ("$ref", "anyOf", "oneOf", "allOf", "title", "const", "$defs"):
            if key in node:
                bad.append(f"{path}.{key}")
        if "properties" in node and node.get("type") != "object":
            bad.append(f"{path}: properties without type object")
        if node.get("x-kubernetes-int-or-string") and "type" in node:
            bad.append(f"{path}: int-or-string with a type")
        for key, value in node.items():
            bad.extend(_walk(value, f"{path}.{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            bad.extend(_walk(value, f"{path}[{i}]"))
    return bad


def test_schemas_are_structural() -> None:
    for crd in build_crds():
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        assert _walk(schema) == []


def test_names_columns_and_status() -> None:
    by_kind = {crd["spec"]["names"]["kind"]: crd for crd in build_crds()}
    assert {k.kind for k in KINDS} == set(by_kind)
    assert by_kind["RecordingBackup"]["spec"]["names"]["shortNames"] == ["rb"]
    assert by_kind["ExportJob"]["spec"]["names"]["shortNames"] == ["ej"]
    assert by_kind["RecordingCertificate"]["spec"]["names"]["shortNames"] == ["rcert"]
    for crd in by_kind.values():
        version = crd["spec"]["versions"][0]
        assert crd["spec"]["names"]["categories"] == ["cxbackup"]
        assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in by_kind["RecordingBackup"]["spec"]["versions"][0]["additionalPrinterColumns"]]
    for wanted in ("Phase", "Progress", "Last Success", "Age"):
        assert wanted in columns


def test_every_spec_field_is_described() -> None:
    missing: list[str] = []

    def walk(node: dict[str, object], path: str) -> None:
        props = node.get("properties")
        if isinstance(props, dict):
            for name, sub in props.items():
                if isinstance(sub, dict):
                    if "description" not in sub and path.startswith(".spec"):
                        missing.append(f"{path}.{name}")
                    walk(sub, f"{path}.{name}")

    for crd in build_crds():
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        walk(schema["properties"]["spec"], f".spec<{crd['spec']['names']['kind']}>")
    assert missing == []


def test_examples_validate_against_the_models() -> None:
    from cxbackup.api import ExportJob, RecordingBackup, RecordingCertificate, RecordingErasure

    models = {
        "RecordingBackup": RecordingBackup,
        "ExportJob": ExportJob,
        "RecordingCertificate": RecordingCertificate,
        "RecordingErasure": RecordingErasure,
    }
    for path in sorted((REPO / "examples").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        models[doc["kind"]].model_validate(doc)


def _status_schema(plural: str) -> dict[str, object]:
    crd = next(c for c in build_crds() if c["spec"]["names"]["plural"] == plural)
    schema: dict[str, object] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    return schema


@pytest.mark.parametrize(
    ("plural", "phases", "conditions"),
    [
        ("recordingbackups", "BACKUP_PHASES", "BACKUP_CONDITIONS"),
        ("exportjobs", "EXPORT_PHASES", "EXPORT_CONDITIONS"),
        ("recordingcertificates", None, "CERTIFICATE_CONDITIONS"),
        ("recordingerasures", "ERASURE_PHASES", "ERASURE_CONDITIONS"),
    ],
)
def test_status_descriptions_name_exactly_the_words_the_operator_writes(
    plural: str, phases: str | None, conditions: str
) -> None:
    from cxbackup.api import status

    props = _status_schema(plural)["properties"]
    assert isinstance(props, dict)
    if phases is not None:
        described = props["phase"]["description"].rstrip(".").replace(" or ", ", ").split(", ")
        assert described == [str(p) for p in getattr(status, phases)]
        assert "Blocked" in described  # written when a reference is missing
    described = props["conditions"]["description"].rstrip(".").replace(" or ", ", ").split(", ")
    assert described == [str(c) for c in getattr(status, conditions)]

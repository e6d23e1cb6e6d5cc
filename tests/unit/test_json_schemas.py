"""The JSON documents of `search`, `retention`, `erase` and `audit` (`--json`) against the schemas shipped
in docs/schemas: real output of the commands on a real backup folder, every optional part present once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cxbackup.cli import main

from .backup.fakes import NOW_MS
from .backup.test_worker import World, dataset

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
COMMANDS = ("search", "retention", "erase", "audit")


def schema(command: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{command}.schema.json").read_text())
    return loaded


def valid(command: str, capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 0) -> dict[str, Any]:
    """Run `cxbackup <command> ... --json`, check its exit code, validate what it printed; return it."""
    assert main([command, *argv, "--json"]) == code
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, schema(command), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    return doc


def test_the_schemas_are_json_schemas_and_every_command_has_one() -> None:
    assert sorted(p.name for p in SCHEMAS.glob("*.schema.json")) == sorted(f"{c}.schema.json" for c in COMMANDS)
    for command in COMMANDS:
        jsonschema.Draft202012Validator.check_schema(schema(command))


def test_search_retention_and_erase_output_follows_the_schemas(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = World(tmp_path, dataset(12))
    world.run()
    root = str(world.root)
    recs = world.records
    found = valid("search", capsys, ["--target", root, "--from", "1970-01-01"])
    assert found["shown"] == found["total"] == 12 and found["totalIsExact"] is True
    assert all(m["path"] for r in found["recordings"] for m in r["media"])  # every media file backed up
    assert "explanation" in valid("search", capsys, ["--target", root, "--agent", "nobody"])

    assert main(["hold", "add", "--target", root, f"id:{recs[0]['id']}", "--reason", "case 1"]) == 0
    capsys.readouterr()
    subject = ["--target", root, "--id", recs[0]["id"], "--id", recs[1]["id"], "--request", "R-1"]
    dry = valid("erase", capsys, subject)
    assert (dry["dryRun"], dry["ledger"], dry["counts"]) == (True, None, {"to-erase": 1, "held": 1})
    done = valid("erase", capsys, [*subject, "--execute"], code=6)
    assert done["ledger"] and {r["outcome"] for r in done["recordings"]} == {"erased", "held"}
    assert "explanation" in valid("erase", capsys, ["--target", root, "--id", "no-such-id", "--request", "R-2"])

    keep = ["--target", root, "--keep-for", "PT1H"]
    swept = valid("retention", capsys, keep)
    assert (swept["dryRun"], swept["held"], swept["holdsInForce"], swept["ledger"]) == (True, 1, 1, [])
    # a recording folder that cannot be removed (it holds a folder) fails, and is listed
    victim = world.root / world.paths(recs[5]).directory
    (victim / "stray").mkdir()
    deleted = valid("retention", capsys, [*keep, "--delete", "--confirm-keep-for", "PT1H"], code=1)
    assert deleted["deleted"] == swept["expired"] - 1 and deleted["failures"][0]["id"] == recs[5]["id"]
    assert deleted["ledger"] and deleted["recordings"][0]["startTime"].endswith("Z")


def test_audit_output_follows_the_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    world = World(tmp_path, dataset(6))
    world.run()
    shutil.rmtree(world.root / world.paths(world.records[2]).directory)  # missing
    config = tmp_path / "config.properties"
    config.write_text(f"gwsUriPrefix=https://gws.example.com/api/v2\ntargetDir={world.root}\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("cxbackup.commands.audit.make_vendor_client", lambda *_: world.vendor.client())
    window = ["--window-start", "0", "--window-end", str(NOW_MS + 1)]
    doc = valid("audit", capsys, ["-config", str(config), *window], code=1)
    assert (doc["checked"], doc["counts"]["missing"], doc["counts"]["ok"]) == (6, 1, 5)
    assert doc["oldestMissingStart"] is not None and doc["window"] == {"start": 0, "end": NOW_MS + 1}
    assert [r["problems"] for r in doc["recordings"] if r["status"] == "missing"] == [["not in the target"]]

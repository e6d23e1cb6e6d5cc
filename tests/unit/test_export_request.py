"""Export names and requests: sanitising, artifact names, times, ranges, validation, spec mapping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cxbackup.api.exportjob import ExportJobSpec
from cxbackup.cli import build_parser
from cxbackup.export.errors import ExportConfigError
from cxbackup.export.names import artifact_name, parse_artifact_name, safe_member_name, sanitize_name
from cxbackup.export.request import ExportRequest, TimeRange, parse_time

NOW = datetime(2026, 8, 25, 0, 15, 30, tzinfo=UTC)
DAY = datetime(2026, 8, 24, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("nightly", "nightly"),
        ("Nightly Export/EU", "nightly-export-eu"),
        ("../../etc/passwd", "etc-passwd"),
        ("a..b", "a-b"),
        ("--x--", "x"),
        ("Réclamations été", "reclamations-ete"),
        ("日本", "export"),
        ("", "export"),
        ("///", "export"),
        ("x" * 100, "x" * 63),
        ("a" * 62 + "-b", "a" * 62),
    ],
)
def test_sanitize_name(raw: str, clean: str) -> None:
    assert sanitize_name(raw) == clean


def test_artifact_names_round_trip_and_foreign_names_are_not_ours() -> None:
    name = artifact_name("Nightly EU", "gdprChat", DAY, DAY + timedelta(days=1), "20260825T001530Z", 12)
    assert name == "nightly-eu-gdpr-chat-20260824T000000Z-20260825T000000Z-20260825T001530Z-part-0012.zip.p7m"
    parsed = parse_artifact_name(name)
    assert parsed is not None
    assert (parsed.export, parsed.type, parsed.part, parsed.run_id) == (
        "nightly-eu",
        "gdprChat",
        12,
        "20260825T001530Z",
    )
    assert parsed.start == DAY and parsed.end == DAY + timedelta(days=1)
    for foreign in (
        "report.pdf",
        name + ".json",
        name.replace(".zip.p7m", ".zip"),
        "../" + name,
        name.replace("gdpr-chat", "recordings"),
        name.replace("20260824T000000Z", "20261324T000000Z"),  # month 13
        "-" + name,
    ):
        assert parse_artifact_name(foreign) is None, foreign
    with pytest.raises(ValueError):
        artifact_name("x", "contactHistory", DAY, DAY, "not-a-run", 1)


def test_safe_member_name() -> None:
    assert safe_member_name("27577f72-f1fc-4954-8d15-99fde406735f") == "27577f72-f1fc-4954-8d15-99fde406735f"
    assert safe_member_name("../..") == "_"
    assert safe_member_name("a/b\\c") == "a_b_c"
    assert safe_member_name("..") == "_"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-08-24", DAY),
        ("2026-08-24T00:00:00Z", DAY),
        ("2026-08-24T02:00:00+02:00", DAY),
        ("2026-08-24T00:00:00", DAY),
        ("2026-08-24T00:00:00.250Z", DAY + timedelta(milliseconds=250)),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    assert parse_time(text) == expected


def test_parse_time_refuses_garbage() -> None:
    with pytest.raises(ExportConfigError, match="RFC 3339"):
        parse_time("yesterday")


def test_ranges() -> None:
    req = ExportRequest("n", "contactHistory", last="P1D")
    assert req.time_range(NOW) == TimeRange(NOW - timedelta(days=1), NOW)
    req = ExportRequest("n", "contactHistory", last="PT12H")
    assert req.time_range(NOW).start == NOW - timedelta(hours=12)
    req = ExportRequest("n", "contactHistory", start=DAY)
    assert req.time_range(NOW) == TimeRange(DAY, NOW)
    rng = ExportRequest("n", "contactHistory", start=DAY, end=DAY + timedelta(hours=1)).time_range(NOW)
    assert (rng.start_ms, rng.end_ms) == (1787529600000, 1787533200000)
    assert rng.describe() == "[2026-08-24T00:00:00Z, 2026-08-24T01:00:00Z)"
    with pytest.raises(ExportConfigError, match="before the run time"):
        ExportRequest("n", "contactHistory", start=NOW + timedelta(days=1)).time_range(NOW)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"type": "gdprChat", "start": DAY}, "whole-organisation chat exports are not supported"),
        ({"type": "gdprChat", "start": DAY, "users": tuple(f"u{i}" for i in range(11))}, "1 to 10"),
        ({"type": "gdprChat", "start": DAY, "users": ("ok", "../etc")}, "not a user id"),
        ({"type": "contactHistory", "start": DAY, "users": ("u1",)}, "only to gdprChat"),
        ({"type": "contactHistory"}, "give the range"),
        ({"type": "contactHistory", "start": DAY, "last": "P1D"}, "not both"),
        ({"type": "contactHistory", "start": DAY, "end": DAY}, "must be before"),
        ({"type": "contactHistory", "last": "P"}, "ISO 8601"),
        ({"type": "contactHistory", "last": "PT0S"}, "longer than zero"),
        ({"type": "contactHistory", "last": "1 day"}, "ISO 8601"),
        ({"type": "contactHistory", "start": DAY, "part_size": 10}, "part size"),
        ({"type": "contactHistory", "start": DAY, "retention_days": 0}, "retention"),
        ({"type": "contactHistory", "start": DAY, "encryption": "DES"}, "encryption"),
        ({"type": "recordings", "start": DAY}, "unknown export type"),
        ({"type": "contactHistory", "start": DAY, "name": "x" * 254}, "1 to 253 characters"),
        ({"type": "contactHistory", "start": DAY, "name": " "}, "needs a name"),
    ],
)
def test_invalid_requests(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ExportConfigError, match=message):
        ExportRequest(**{"name": "n", **kwargs})  # type: ignore[arg-type]


def test_users_are_deduplicated_in_order() -> None:
    req = ExportRequest("n", "gdprChat", start=DAY, users=("b", "a", "b"))
    assert req.users == ("b", "a")


def test_from_spec_and_back_to_cli_arguments() -> None:
    spec = ExportJobSpec.model_validate(
        {
            "type": "gdprChat",
            "source": {"apiUriPrefix": "http://api", "credentialsSecret": "gws"},
            "range": {"from": "2026-08-24T00:00:00Z", "to": "2026-08-25T00:00:00Z"},
            "users": ["u1", "u2"],
            "certificate": {"secret": "cert"},
            "encryption": "AES-128",
            "store": {"pvc": "exports"},
            "retentionDays": 7,
        }
    )
    req = ExportRequest.from_spec(spec, "gdpr-request-42")
    assert (req.type, req.users, req.encryption, req.retention_days) == ("gdprChat", ("u1", "u2"), "AES-128", 7)
    assert req.time_range(NOW) == TimeRange(DAY, DAY + timedelta(days=1))
    args = build_parser().parse_args(["export", "run", *req.to_args(), "--cert", "c.pem", "--store", "/x"])
    assert (args.name, args.type, args.user, args.start, args.end) == (
        "gdpr-request-42",
        "gdprChat",
        ["u1", "u2"],
        "2026-08-24T00:00:00Z",
        "2026-08-25T00:00:00Z",
    )
    assert (args.encryption, args.retention_days) == ("AES-128", 7)
    last = ExportRequest("n", "contactHistory", last="P1D", part_size=4096)
    assert last.to_args()[-4:] == ["--retention-days", "30", "--part-size", "4096"]
    assert "--last" in last.to_args()

"""The worker's side of its contract with `cxbackup-fetch`: native/fetch/contract/fetch.schema.json and the
examples beside it (the program's side: native/fetch/contract_test.go). What nativefetch.py sends (requests,
flags, environment), what it accepts (answers, the version answer) and the temporary-name rule
(layout.temp_name) are checked against the schema, read from the repository: the installed package does
not carry it."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cxbackup.backup import nativefetch
from cxbackup.backup.errors import (
    ConfigError,
    MediaAuthError,
    MediaIntegrityError,
    MediaMissingError,
    MediaSourceError,
    RcbsError,
    TargetError,
)
from cxbackup.backup.layout import TEMP_PATTERN, is_temp_name, temp_name
from cxbackup.backup.nativefetch import (
    PROTOCOL,
    Answer,
    NativeFetcher,
    _outcome,
    check_protocol,
    file_request,
    recording_request,
)
from cxbackup.backup.s3source import S3Options
from cxbackup.core.retry import RetryPolicy

CONTRACT = Path(__file__).resolve().parents[3] / "native" / "fetch" / "contract"
SCHEMA: dict[str, Any] = json.loads((CONTRACT / "fetch.schema.json").read_text())
DEFS: dict[str, dict[str, Any]] = SCHEMA["$defs"]
EXAMPLES: dict[str, dict[str, list[dict[str, Any]]]] = {
    p.stem: json.loads(p.read_text()) for p in sorted((CONTRACT / "examples").glob("*.json"))
}

# Answer's fields by the answer's JSON name (the rest of an answer: its id and error)
ANSWER_FIELDS = {"files": "files", "bytes": "bytes", "skipped": "skipped", "checks": "checks", "notes": "notes",
                 "attempts": "retries"}  # fmt: skip
# what each kind of failure becomes in the worker (s3: by its status and code, as boto3's errors)
FAILURES: dict[str, type[RcbsError]] = {
    "s3": RcbsError,
    "network": MediaSourceError,
    "tls": MediaSourceError,
    "integrity": MediaIntegrityError,
    "target": TargetError,
}


def validator(definition: str) -> jsonschema.Draft202012Validator:
    """A validator of $defs/<definition> (the whole schema, so its references resolve)."""
    assert definition in DEFS, f"the contract has no $defs/{definition}"
    return jsonschema.Draft202012Validator({**SCHEMA, "$ref": f"#/$defs/{definition}"})


def valid(definition: str, instance: object) -> None:
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(definition).iter_errors(instance)
    ]
    assert not errors, f"{instance!r} is no $defs/{definition}: {errors}"


def examples(validity: str) -> list[Any]:
    return [
        pytest.param(definition, e["message"], id=f"{definition}/{e['name']}")
        for definition, sets in EXAMPLES.items()
        for e in sets[validity]
    ]


def options(**extra: Any) -> S3Options:
    return S3Options(access_key_id="AKIDEXAMPLE", secret_access_key="secret", **extra)


def fetcher(binary: str = "cxbackup-fetch", **extra: Any) -> NativeFetcher:
    return NativeFetcher(binary, options(**extra), in_flight=64, retry=RetryPolicy(), stall_seconds=120.0)


def flags(argv: list[str]) -> dict[str, str]:
    """The program's flags as the contract's $defs/arguments: {name: value}, a bare -name being "true"."""
    out = {}
    for arg in argv:
        assert arg.startswith("-") and not arg.startswith("--"), arg
        name, _, value = arg[1:].partition("=")
        out[name] = value if "=" in arg else "true"
    return out


def test_the_contract_is_a_json_schema_with_examples_of_every_message() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    for definition in ("request", "answer", "versionAnswer", "tempName", "arguments", "environment"):
        assert EXAMPLES[definition]["valid"] and EXAMPLES[definition]["invalid"], definition


@pytest.mark.parametrize(("definition", "message"), examples("valid"))
def test_valid_examples_are_valid(definition: str, message: object) -> None:
    valid(definition, message)


@pytest.mark.parametrize(("definition", "message"), examples("invalid"))
def test_invalid_examples_are_refused(definition: str, message: object) -> None:
    assert not validator(definition).is_valid(message)


# --- the protocol version --------------------------------------------------------------------------------


def test_the_protocol_version_is_the_contracts() -> None:
    assert DEFS["protocol"]["const"] == PROTOCOL
    valid("versionAnswer", {"protocol": PROTOCOL})


@pytest.mark.parametrize(
    "answer", [pytest.param(e["message"], id=e["name"]) for sets in EXAMPLES["versionAnswer"].values() for e in sets]
)
def test_check_protocol_accepts_this_protocol_only(tmp_path: Path, answer: object) -> None:
    """check_protocol runs `<program> -version`: a stand-in prints the example and notes its arguments. Every
    valid version answer is accepted; of the invalid ones, those of another protocol are refused."""
    program = tmp_path / "cxbackup-fetch"
    program.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$0.args\"\necho '{json.dumps(answer)}'\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    if isinstance(answer, dict) and answer.get("protocol") == PROTOCOL:
        check_protocol(str(program))
    else:
        assert not validator("versionAnswer").is_valid(answer)
        with pytest.raises(ConfigError):
            check_protocol(str(program))
    valid("arguments", flags((tmp_path / "cxbackup-fetch.args").read_text().split()))


# --- what the worker sends -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        recording_request(
            "/backup/2026/08/24/13",
            [
                file_request(bucket="media", key="eu/ab12.mp3", region="eu-west-1", name="ab12.mp3.bin", have=None),
                file_request(bucket="media", key="eu/cd34", region="", name="cd34 é.bin", have=0),
                file_request(bucket="m", key="k", region="us-east-1", name=".h", have=81234),
            ],
            metadata_name="CALL-UUID-1.json",
            metadata='{"id":"r1"}',
            metadata_present=False,
        ),
        recording_request("/b", [], metadata_name="r.json", metadata="", metadata_present=True),
    ],
    ids=["media and metadata", "metadata only"],
)
def test_requests_the_worker_builds_follow_the_contract(request_: nativefetch.Request) -> None:
    valid("request", {**request_, "id": 1})
    assert "id" not in request_  # submit numbers them


def stand_in(tmp_path: Path, answers: list[dict[str, Any]]) -> Path:
    """A stand-in program: notes each request line in <program>.requests and answers it with the next of
    `answers` (its id set to the request's)."""
    program = tmp_path / "cxbackup-fetch"
    program.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"answers = {answers!r}\n"
        "with open(sys.argv[0] + '.requests', 'w') as log:\n"
        "    for i, line in enumerate(sys.stdin):\n"
        "        log.write(line)\n"
        "        log.flush()\n"
        "        print(json.dumps({**answers[i % len(answers)], 'id': json.loads(line)['id']}), flush=True)\n"
    )
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return program


def test_what_submit_writes_and_reads_follows_the_contract(tmp_path: Path) -> None:
    """Every request line the program gets is a $defs/request, and every valid answer example comes back
    as the worker's Answer or error."""
    answers = [e["message"] for e in EXAMPLES["answer"]["valid"]]
    program = stand_in(tmp_path, answers)
    fetch = fetcher(str(program))
    outcomes: dict[int, Answer | RcbsError] = {}

    def done(i: int, outcome: Any) -> None:
        try:
            outcomes[i] = outcome()
        except RcbsError as exc:
            outcomes[i] = exc

    files = [file_request(bucket="media", key="k", region="eu-west-1", name="k.bin", have=None)]
    with fetch.running():
        for i in range(len(answers)):
            request_ = recording_request(
                str(tmp_path / f"r{i}"), files, metadata_name="r.json", metadata="{}", metadata_present=i % 2 == 0
            )
            fetch.submit(request_, lambda outcome, i=i: done(i, outcome))
    lines = (tmp_path / "cxbackup-fetch.requests").read_text().splitlines()
    assert len(lines) == len(answers)
    for line in lines:
        valid("request", json.loads(line))
    assert sorted(json.loads(line)["id"] for line in lines) == list(range(1, len(answers) + 1))
    for i, answer in enumerate(answers):
        expect_outcome(answer, outcomes[i])


def expect_outcome(message: dict[str, Any], outcome: Answer | RcbsError) -> None:
    if "error" in message:
        kind = message["error"]["kind"]
        assert isinstance(outcome, FAILURES[kind]), (message, outcome)
        if kind == "tls":
            assert outcome.retryable is False and "caCertificates" in str(outcome)
        return
    assert isinstance(outcome, Answer), (message, outcome)
    defaults = {"skipped": False, "checks": {}, "notes": [], "attempts": 0}
    for key, attribute in ANSWER_FIELDS.items():
        got = getattr(outcome, attribute)
        assert (list(got) if key == "notes" else got) == message.get(key, defaults.get(key)), key


@pytest.mark.parametrize("answer", [pytest.param(e["message"], id=e["name"]) for e in EXAMPLES["answer"]["valid"]])
def test_every_valid_answer_is_understood(answer: dict[str, Any]) -> None:
    try:
        outcome: Answer | RcbsError = _outcome(answer)()
    except RcbsError as exc:
        outcome = exc
    expect_outcome(answer, outcome)


def test_the_worker_reads_every_answer_field_and_knows_every_kind_and_check() -> None:
    """A field, a kind of failure or a check added to the contract needs the worker's reading of it."""
    assert {*ANSWER_FIELDS, "id", "error"} == set(DEFS["answer"]["properties"])
    assert set(FAILURES) == set(DEFS["failureKind"]["enum"])
    assert set(nativefetch._CHECKS) == set(DEFS["checkName"]["enum"])


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [(403, "AccessDenied", MediaAuthError), (404, "NoSuchKey", MediaMissingError), (503, "SlowDown", MediaSourceError)],
)
def test_s3_failures_are_classified_by_status_and_code(status: int, code: str, error: type[RcbsError]) -> None:
    failure = {"kind": "s3", "object": "s3://media/k", "status": status, "code": code, "message": "m"}
    valid("failure", failure)
    with pytest.raises(error, match="s3://media/k"):
        _outcome({"id": 1, "files": 0, "bytes": 0, "error": failure})()


def test_the_flags_the_worker_passes_follow_the_contract() -> None:
    for fetch in (fetcher(), fetcher(endpoint_url="http://127.0.0.1:9000", proxy_url="http://proxy:3128")):
        valid("arguments", flags(fetch._argv[1:]))


def test_the_environment_the_worker_passes_is_the_contracts(monkeypatch: pytest.MonkeyPatch) -> None:
    allowed = set(DEFS["environment"]["properties"])
    for name in [*allowed, "AWS_PROFILE", "AWS_ENDPOINT_URL", "CXBACKUP_FETCH", "KUBERNETES_SERVICE_HOST"]:
        monkeypatch.setenv(name, f"worker's {name}")
    fetch = fetcher(session_token="token")
    valid("environment", fetch._env)
    assert set(fetch._env) == allowed  # all it may see, and nothing else
    assert fetch._env["AWS_ACCESS_KEY_ID"] == "AKIDEXAMPLE"  # the options', not the worker's own
    assert set(nativefetch._PASSED_ENV) | set(DEFS["environment"]["required"]) | {"AWS_SESSION_TOKEN"} == allowed
    for name in allowed:
        monkeypatch.delenv(name)
    valid("environment", fetcher()._env)


# --- temporary names -------------------------------------------------------------------------------------


def test_the_temporary_name_rule_is_the_contracts() -> None:
    assert DEFS["tempName"]["pattern"] == TEMP_PATTERN
    for final in ("ab12.mp3.bin", "CALL-UUID-1.json", ".last_recording_endtime.txt", "é ü.mp4", "n" * 175):
        name = temp_name(final)
        valid("tempName", name)
        assert name.startswith(f".{final}.part-") and is_temp_name(name)


@pytest.mark.parametrize(
    ("name", "ours"),
    [pytest.param(e["message"], True, id=e["name"]) for e in EXAMPLES["tempName"]["valid"]]
    + [pytest.param(e["message"], False, id=e["name"]) for e in EXAMPLES["tempName"]["invalid"]],
)
def test_the_worker_recognises_the_contracts_temporary_names(name: str, ours: bool) -> None:
    assert is_temp_name(name) is ours


# --- the program itself ----------------------------------------------------------------------------------


def test_the_program_itself_answers_as_the_contract_says(tmp_path: Path) -> None:
    """The installed cxbackup-fetch (no S3 needed): its version answer, and its answers to requests it can
    finish or refuse without a download, line by line as it wrote them."""
    binary = nativefetch.find_fetcher()
    assert binary is not None, "`make venv` installs cxbackup-fetch into the venv's bin folder"
    version = subprocess.run([binary, "-version"], capture_output=True, check=True, timeout=30).stdout
    valid("versionAnswer", json.loads(version))

    def numbered(i: int, folder: str, files: list[nativefetch.FileRequest], present: bool = False) -> dict[str, Any]:
        data = "" if present else "{}"
        request = recording_request(folder, files, metadata_name="r.json", metadata=data, metadata_present=present)
        return {**request, "id": i}

    unsafe = file_request(bucket="b", key="k", region="", name="..", have=None)
    requests = [
        numbered(1, str(tmp_path / "a"), []),
        numbered(2, str(tmp_path / "b"), [], present=True),
        numbered(3, "relative", []),
        numbered(4, str(tmp_path / "c"), [unsafe]),
    ]
    env = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret"}
    stdin = "".join(json.dumps(r) + "\n" for r in requests)
    out = subprocess.run([binary], input=stdin.encode(), env=env, capture_output=True, check=True, timeout=30).stdout
    answers = {a["id"]: a for a in map(json.loads, out.splitlines())}
    for answer in answers.values():
        valid("answer", answer)
    assert answers[1] == {"id": 1, "files": 1, "bytes": 2} and (tmp_path / "a" / "r.json").read_text() == "{}"
    assert answers[2] == {"id": 2, "files": 0, "bytes": 0, "skipped": True}
    assert answers[3]["error"]["kind"] == answers[4]["error"]["kind"] == "target"

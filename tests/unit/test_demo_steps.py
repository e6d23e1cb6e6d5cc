"""The demo's step runner (`cxbackup-dev demo`): a step that fails makes the demo exit 1 with one line naming the
step and why, no later step runs, and everything started so far is stopped. Through the demo's own `run()`, with
injected steps (no cluster)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from cxbackup_dev.commands import demo
from cxbackup_dev.emulator import Dataset, DatasetSpec


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    demo.register(parser.add_subparsers(), "demo", "")
    return parser.parse_args(["demo", *argv])


class Started:
    """Something a step starts (as the emulator or the cluster): records whether it was stopped."""

    def __init__(self) -> None:
        self.stopped = False

    def __enter__(self) -> Started:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped = True


class Run:
    """Steps for one run, recording what ran and what was started."""

    def __init__(self) -> None:
        self.started: list[Started] = []
        self.ran: list[str] = []
        self.workdir: Path | None = None

    def start(self, d: demo.Demo) -> str:
        self.ran.append("start")
        self.workdir = d.workdir
        self.started.append(d.resources.enter_context(Started()))
        (d.workdir / "file").write_text("x")
        return "started 1 thing"

    def fail(self, d: demo.Demo) -> str:
        self.ran.append("fail")
        raise demo.DemoStepFailed("expected 1 recording for +15550001234, found 0", detail="first\nsecond")

    def crash(self, d: demo.Demo) -> str:
        self.ran.append("crash")
        raise RuntimeError("the API server went away\noperator log: ...")

    def later(self, d: demo.Demo) -> str:
        self.ran.append("later")
        return "never"


def test_a_failing_step_exits_1_names_the_step_runs_no_later_step_and_stops_what_was_started(
    capsys: pytest.CaptureFixture[str],
) -> None:
    r = Run()
    steps = [
        demo.Step("cluster", "start", r.start),
        demo.Step("search", "find one person's call", r.fail),
        demo.Step("decrypt", "never reached", r.later),
    ]
    assert demo.run(_args(), steps) == 1
    out, err = capsys.readouterr()
    assert err.strip().splitlines()[-1] == "FAILED step 2 (search): expected 1 recording for +15550001234, found 0"
    assert "OK step 1 (cluster): started 1 thing" in out
    assert "    first\n    second" in out  # the detail, above the line
    assert "step 3" not in out + err and r.ran == ["start", "fail"]
    assert [s.stopped for s in r.started] == [True]
    assert r.workdir is not None and not r.workdir.exists()  # the temporary folder is removed
    assert "all 3 steps verified" not in out


def test_an_unexpected_error_in_a_step_fails_that_step_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    r = Run()
    steps = [demo.Step("cluster", "start", r.start), demo.Step("backup", "back up", r.crash)]
    assert demo.run(_args(), steps) == 1
    out, err = capsys.readouterr()
    assert err.strip().splitlines()[-1] == "FAILED step 2 (backup): RuntimeError: the API server went away"
    assert "operator log: ..." in out
    assert [s.stopped for s in r.started] == [True]


def test_every_step_verified_exits_0_and_keeps_a_given_workdir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    r = Run()
    steps = [demo.Step("cluster", "start", r.start), demo.Step("later", "more", r.later)]
    assert demo.run(_args("--workdir", str(tmp_path / "w")), steps) == 0
    out, err = capsys.readouterr()
    assert "OK step 1 (cluster): started 1 thing" in out and "OK step 2 (later): never" in out
    assert "demo: all 2 steps verified" in out and "FAILED" not in out + err
    assert [s.stopped for s in r.started] == [True]
    assert (tmp_path / "w" / "file").exists()


def test_a_failure_to_stop_fails_the_demo(capsys: pytest.CaptureFixture[str]) -> None:
    class Unstoppable(Started):
        def __exit__(self, *exc: object) -> None:
            raise OSError("kubelet would not stop")

    def start(d: demo.Demo) -> str:
        d.resources.enter_context(Unstoppable())
        return "started"

    assert demo.run(_args(), [demo.Step("cluster", "start", start)]) == 1
    _, err = capsys.readouterr()
    assert err.strip().splitlines()[-1] == "FAILED stopping what the demo started: OSError: kubelet would not stop"


def test_a_step_that_needs_what_an_earlier_step_did_not_provide_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.run(_args(), [demo.Step("search", "search", demo.step_search)]) == 1
    _, err = capsys.readouterr()
    assert err.strip().splitlines()[-1] == (
        "FAILED step 1 (search): the emulator's recordings in the window is not there: an earlier step did not "
        "provide it"
    )


def test_the_demo_tells_the_story_in_order() -> None:
    assert [s.name for s in demo.STEPS] == ["cluster", "backup", "tree", "search", "decrypt", "audit"]


def test_a_person_is_found_by_every_number_of_theirs_and_only_theirs() -> None:
    """The demo's expected search result comes from the data set: the chosen caller's number is one of the
    recording's numbers, and the dialed numbers (shared by many calls) are numbers of many recordings."""
    records: list[dict[str, Any]] = list(Dataset(DatasetSpec(hours=3, recordings_per_hour=6, seed=7)).iter_records())
    person = demo._choose_person(records)
    assert len(person["mediaFiles"]) == 2  # one with a screen recording, when there is one
    caller = "".join(c for c in person["callerPhoneNumber"] if c.isdigit())
    numbers = demo.phone_numbers(person)
    assert caller in numbers and person["mediaFiles"][0]["parameters"]["recordDN"].lstrip("+") in numbers
    dialed = "".join(c for c in person["dialedPhoneNumber"] if c.isdigit())
    assert sum(dialed in demo.phone_numbers(r) for r in records) > 1
    assert [r["id"] for r in records if caller in demo.phone_numbers(r)] == [person["id"]]

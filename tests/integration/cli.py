"""Running the `cxbackup` command line from the integration tests: in this process, or as a new process.

`run_cli` calls the real entry point (`cxbackup.cli.main`, what the console script calls) with the arguments,
the environment the test gives on top of this process's, standard output and standard error captured, and
returns what a process would: its exit code (`sys.exit` and argparse's exits included; an uncaught exception
is printed to the captured stderr and gives exit 1, as Python does) and the two streams. It saves about a
second of imports (pydantic, boto3, the CRT) per run. Everything the run may change in this process is put
back afterwards: the environment (`CXBACKUP_CA_CERTIFICATES` sets `AWS_CA_BUNDLE`, for one), the working
directory, the umask, the signal handlers, the `cxbackup` logger's level, handlers and propagation, and
sys.stdout, sys.stderr and sys.stdin.

`run_cli_process` runs `python -m cxbackup` as a new process, as a user or a Job runs it: each command keeps
at least one test through it, so the process path (imports, `__main__`, the exit status) stays tested.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = ["run_cli", "run_cli_process"]

Result = subprocess.CompletedProcess[str]

_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE)


class _Stream(io.TextIOWrapper):
    """A text stream over bytes (it has `.buffer`, like a pipe's sys.stdout), not a terminal."""

    def __init__(self) -> None:
        super().__init__(io.BytesIO(), encoding="utf-8", errors="backslashreplace", write_through=True)

    def text(self) -> str:
        self.flush()
        raw = self.buffer
        assert isinstance(raw, io.BytesIO)
        return raw.getvalue().decode("utf-8", errors="replace")


@contextmanager
def _isolated(env: Mapping[str, str], cwd: Path | None) -> Iterator[None]:
    saved_env = dict(os.environ)
    saved_cwd = Path.cwd()
    saved_umask = os.umask(0o022)
    os.umask(saved_umask)
    saved_signals = {s: signal.getsignal(s) for s in _SIGNALS}
    logger = logging.getLogger("cxbackup")
    saved_logger = (logger.level, list(logger.handlers), logger.propagate, logger.disabled)
    saved_streams = (sys.stdout, sys.stderr, sys.stdin)
    os.environ.update(env)
    if cwd is not None:
        os.chdir(cwd)
    try:
        yield
    finally:
        sys.stdout, sys.stderr, sys.stdin = saved_streams
        logger.setLevel(saved_logger[0])
        logger.handlers[:] = saved_logger[1]
        logger.propagate, logger.disabled = saved_logger[2], saved_logger[3]
        for s, handler in saved_signals.items():
            if handler is not None:
                signal.signal(s, handler)
        os.umask(saved_umask)
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


def _exit_code(code: object, err: io.TextIOBase) -> int:
    """What the interpreter makes of `sys.exit(code)`."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=err)
    return 1


def run_cli(
    args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 120, *, cwd: Path | None = None
) -> Result:
    """`cxbackup ARGS` in this process, with `env` added to the environment; like `subprocess.run` with
    captured text output. (`timeout` is accepted for the same signature as `run_cli_process`; pytest's own
    timeout bounds an in-process run.)"""
    from cxbackup.cli import main

    out, err = _Stream(), _Stream()
    with _isolated(env or {}, cwd):
        sys.stdout, sys.stderr, sys.stdin = out, err, io.StringIO()
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = _exit_code(exc.code, err)
        except Exception:
            traceback.print_exc(file=err)
            code = 1
        else:
            code = _exit_code(code, err)
    return subprocess.CompletedProcess(["cxbackup.cli.main", *args], code, out.text(), err.text())


def run_cli_process(
    args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 120, *, cwd: Path | None = None
) -> Result:
    """`python -m cxbackup ARGS` as a new process, with `env` added to this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "cxbackup", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
    )

"""Logging of the command-line tools: one stderr handler on a cxbackup logger, set up once (idempotent)."""

from __future__ import annotations

import logging
import sys

__all__ = ["setup_logging"]


class _CurrentStderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is when a record comes (it may be replaced, e.g. by pytest or rich)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def setup_logging(
    verbose: bool = False,
    *,
    logger: str = "cxbackup",
    fmt: str = "%(asctime)s %(levelname)s %(module)s - %(message)s",
    datefmt: str = "%Y-%m-%d %H:%M:%S",
) -> None:
    """Send `logger`'s records (INFO, or DEBUG when verbose) to stderr, once, and not to the root logger."""
    target = logging.getLogger(logger)
    target.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not any(isinstance(h, _CurrentStderrHandler) for h in target.handlers):
        handler = _CurrentStderrHandler()
        handler.setFormatter(logging.Formatter(fmt, datefmt))
        target.addHandler(handler)
        target.propagate = False

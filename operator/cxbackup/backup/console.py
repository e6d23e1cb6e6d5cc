"""What the RCBS commands share on a console: logging, progress sink choice, config loading, summary file.

Log lines look like RCBS's (`2018-02-22 08:25:50 INFO worker - ...`) and go to stderr (through the
current `sys.stderr`, so a rich progress bar can keep them above itself).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Literal

from cxbackup.backup.config import RcbsConfig, load_properties
from cxbackup.backup.errors import ConfigError
from cxbackup.backup.progress import LogProgressSink, ProgressSink, RichProgressSink

__all__ = ["ProgressMode", "load_config_file", "make_sink", "write_summary_file"]

ProgressMode = Literal["auto", "bar", "log", "none"]

log = logging.getLogger("cxbackup.backup")


def make_sink(mode: ProgressMode) -> ProgressSink | None:
    """A rich bar on a terminal (or when asked), periodic log lines otherwise; None for "none"."""
    if mode == "none":
        return None
    if mode == "bar" or (mode == "auto" and sys.stderr.isatty() and os.environ.get("TERM") != "dumb"):
        return RichProgressSink()
    return LogProgressSink()


def load_config_file(path: str) -> RcbsConfig:
    """Read and parse a config.properties file; warnings are logged."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # what java.util.Properties.load(InputStream) assumes
    config, warnings = load_properties(text, path)
    for warning in warnings:
        log.warning("%s", warning)
    return config


def write_summary_file(path: str, text: str) -> None:
    """Write the summary JSON in place (a rename would fail on a bind mount like /dev/termination-log)."""
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        log.error("cannot write the summary to %s: %s", path, exc.strerror or exc)

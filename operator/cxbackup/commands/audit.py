"""`cxbackup audit -config FILE [--key KEY | --keyring DIR] [--json]`: the vendor's list vs the target.

Per recording of the config's window (all shards unless --shard-only): ok, missing, size_mismatch,
metadata_missing, and with a key or keyring also undecryptable; a recording the target's ledger says was
erased or deleted by the retention sweep is reported as erased or expired, not as missing. Exits 1 when
any recording is missing or damaged, 0 when all are ok, erased or expired. The window is the config's
(windowStart/windowEnd, minDate/maxDate, or minAge/maxAge from now; the stored last recording end time
is not used), or --window-start/--window-end.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from cxbackup.backup.audit import AuditReport, AuditStatus, KeyCheck, iter_audit
from cxbackup.backup.config import Credentials
from cxbackup.backup.connections import make_media_source, make_vendor_client, open_target
from cxbackup.backup.console import load_config_file
from cxbackup.backup.errors import RcbsError
from cxbackup.backup.s3source import MediaSource
from cxbackup.backup.window import RecordingWindow, compute_window
from cxbackup.commands.download import add_common_arguments
from cxbackup.core.errors import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from cxbackup.core.logs import setup_logging
from cxbackup.core.redact import Redactor
from cxbackup.core.times import from_ms, iso

__all__ = ["register", "run"]

log = logging.getLogger("cxbackup.backup")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description=(__doc__ or "").split("\n\n")[0])
    add_common_arguments(p)
    keys = p.add_mutually_exclusive_group()
    keys.add_argument("--key", type=Path, metavar="KEY", help="private key (PEM) to test-decrypt every media file")
    keys.add_argument("--keyring", type=Path, metavar="DIR", help="directory of keys and certificates (keyring)")
    p.add_argument(
        "--key-password-env", metavar="VAR", help="environment variable holding the key password, if encrypted"
    )
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text lines")
    p.add_argument("--problems-only", action="store_true", help="list only recordings that are not ok")
    p.add_argument("--shard-only", action="store_true", help="audit only this instance's shard (rcbsInstanceId)")
    p.add_argument("--window-start", type=int, metavar="MS", help="explicit window start, epoch ms")
    p.add_argument("--window-end", type=int, metavar="MS", help="explicit window end, epoch ms (exclusive)")
    p.set_defaults(func=run)


def _iso(ms: int | None) -> str | None:
    return iso(from_ms(ms)) if ms is not None else None


def _key_check(args: argparse.Namespace) -> KeyCheck | None:
    from cxbackup.backup.audit import key_check_from_key_file, key_check_from_keyring

    password = os.environ.get(args.key_password_env) if args.key_password_env else None
    if args.key is not None:
        return key_check_from_key_file(args.key, password)
    if args.keyring is not None:
        return key_check_from_keyring(args.keyring, password)
    return None


def _report_to_operator(report: AuditReport) -> None:
    """In an operator's audit pod (CXBACKUP_STATUS_RESOURCE set), write the findings to status.audit."""
    from cxbackup.api import workerenv

    if not os.environ.get(workerenv.STATUS_RESOURCE):
        return
    from cxbackup.worker.status import report_audit

    counts = report.counts
    report_audit(
        os.environ,
        {
            "lastTime": iso(datetime.now(UTC)),
            "checked": report.checked,
            "missing": counts.get("missing", 0) + counts.get("metadata_missing", 0),
            "mismatched": counts.get("size_mismatch", 0),
            "oldestMissingStart": _iso(report.oldest_missing_start),
        },
    )


def run(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    try:
        config = load_config_file(args.config)
        credentials = Credentials.from_env(os.environ)
        if (args.window_start is None) != (args.window_end is None):
            log.error("give both --window-start and --window-end")
            return EXIT_CONFIG
        if args.window_start is not None:
            window = RecordingWindow(args.window_start, args.window_end)
        else:
            window = compute_window(config, datetime.now(UTC), None)
        try:
            key_check = _key_check(args)
        except Exception as exc:  # the certs module's KeyFileError and friends
            log.error("cannot load the key: %s", exc)
            return EXIT_CONFIG
        target = open_target(config, credentials, create=False)
        vendor = make_vendor_client(config, credentials)
        source: MediaSource | None = None
        if not config.metadata_only:
            if credentials.aws_access_key_id and credentials.aws_secret_access_key:
                source = make_media_source(config, credentials, vendor.settings())
            else:
                log.warning("no S3 credentials: media sizes are not compared with S3")
        log.info("Auditing %s against %s", window.describe(), target.description)
        report = AuditReport(window=window)
        listed: list[dict[str, object]] = []
        from cxbackup.backup.removal import deleted_ids

        removed = deleted_ids(target)
        for entry in iter_audit(
            config, window, vendor, target, source, key_check=key_check, shard_only=args.shard_only, removed=removed
        ):
            report.add(entry)
            if args.problems_only and entry.status is AuditStatus.OK:
                continue
            if args.json:
                listed.append(
                    {
                        "id": entry.recording_id,
                        "startTime": _iso(entry.start_ms),
                        "status": entry.status.value,
                        "problems": list(entry.problems),
                    }
                )
            else:
                detail = f"  ({'; '.join(entry.problems)})" if entry.problems else ""
                print(f"{entry.status.value:<16} {entry.recording_id} {_iso(entry.start_ms)}{detail}")
    except RcbsError as exc:
        log.error("%s", Redactor(Credentials.from_env(os.environ).secrets()).clean(str(exc)))
        return exc.exit_code
    except ValueError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    _report_to_operator(report)
    if args.json:
        json.dump(
            {
                "window": {"start": window.start_ms, "end": window.end_ms},
                "checked": report.checked,
                "counts": report.counts,
                "oldestMissingStart": _iso(report.oldest_missing_start),
                "recordings": listed,
            },
            sys.stdout,
            indent=2,
        )
        print()
    else:
        counts = ", ".join(f"{k}: {v}" for k, v in report.counts.items())
        print(f"Audit of {report.checked} recordings {window.describe()}: {counts}")
    return EXIT_OK if report.ok else EXIT_FAILED

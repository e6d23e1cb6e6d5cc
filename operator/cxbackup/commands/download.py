"""`cxbackup download -config config.properties [-verify s3]`: the RCBS-compatible backup worker.

Same command line as `java -jar rp_clouddownload.jar -config config.properties [-verify s3]`
(`--config` works too). Credentials come from GWS_USERNAME, GWS_PASSWORD, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY (+ AWS_ENDPOINT_URL, TARGET_AWS_*). Exit codes: 0 done, 1 some recordings
failed (or verification failed), 2 configuration error, 3 another instance holds the lock,
4 credentials rejected, 5 the vendor service or S3 unavailable, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os

from cxbackup.backup.config import Credentials, RcbsConfig
from cxbackup.backup.console import ProgressMode, load_config_file, make_sink, write_summary_file
from cxbackup.backup.errors import RcbsError
from cxbackup.backup.progress import MultiSink, ProgressSink
from cxbackup.backup.verify import run_verify
from cxbackup.backup.window import RecordingWindow
from cxbackup.backup.worker import run_backup
from cxbackup.core.errors import EXIT_CONFIG, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from cxbackup.core.logs import setup_logging
from cxbackup.core.redact import Redactor

__all__ = ["add_common_arguments", "register", "run"]

log = logging.getLogger("cxbackup.backup")


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-config", "--config", dest="config", required=True, metavar="FILE", help="config.properties")
    p.add_argument("--verbose", action="store_true", help="debug logging")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description=(__doc__ or "").split("\n\n")[0])
    add_common_arguments(p)
    p.add_argument(
        "-verify", "--verify", dest="verify", choices=["s3"], help="only check the credentials and buckets (s3)"
    )
    p.add_argument("--summary-file", metavar="PATH", help="write the run summary JSON here (e.g. /dev/termination-log)")
    p.add_argument(
        "--progress", choices=["auto", "bar", "log", "none"], default="auto", help="progress display (default auto)"
    )
    p.add_argument(
        "--rcbs-instance-id",
        type=int,
        metavar="I",
        help="override rcbsInstanceId (e.g. $(JOB_COMPLETION_INDEX) in an Indexed Job sharing one config)",
    )
    p.add_argument("--total-rcbs-instances", type=int, metavar="N", help="override totalRcbsInstances")
    p.add_argument("--window-start", type=int, metavar="MS", help="explicit window start, epoch ms (with --window-end)")
    p.add_argument("--window-end", type=int, metavar="MS", help="explicit window end, epoch ms (exclusive)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    summary_file: str | None = args.summary_file
    redactor = Redactor(Credentials.from_env(os.environ).secrets())
    try:
        config = load_config_file(args.config)
        overrides = {
            name: value
            for name, value in (
                ("rcbsInstanceId", args.rcbs_instance_id),
                ("totalRcbsInstances", args.total_rcbs_instances),
            )
            if value is not None
        }
        if overrides:
            config = RcbsConfig.from_values({**config.model_dump(by_alias=True), **overrides}, "command line")
        credentials = Credentials.from_env(os.environ)
        if args.verify == "s3":
            return EXIT_OK if run_verify(config, credentials).ok else EXIT_FAILED
        summary_file = summary_file or config.summary_file
        window = None
        if (args.window_start is None) != (args.window_end is None):
            log.error("give both --window-start and --window-end")
            return EXIT_CONFIG
        if args.window_start is not None:
            try:
                window = RecordingWindow(args.window_start, args.window_end)
            except ValueError as exc:
                log.error("%s", exc)
                return EXIT_CONFIG
        summary = run_backup(config, credentials, window=window, sink=_sink(args.progress, config))
    except RcbsError as exc:
        message = redactor.clean(str(exc))
        log.error("%s", message)
        if summary_file:
            write_summary_file(summary_file, _error_json(message))
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted; the last recording end time was not advanced")
        return EXIT_INTERRUPTED
    if summary_file:
        write_summary_file(summary_file, summary.to_json())
    return summary.exit_code


def _sink(mode: ProgressMode, config: RcbsConfig) -> ProgressSink | None:
    """The console sink, plus the shard status reporter when the operator started this pod."""
    from cxbackup.worker.status import reporter_from_env

    console = make_sink(mode)
    reporter = reporter_from_env(os.environ, config.rcbs_instance_id)
    if reporter is None:
        return console
    return MultiSink([s for s in (console, reporter) if s is not None])


def _error_json(message: str) -> str:
    import json

    return json.dumps(
        {"kind": "RcbsRunSummary", "version": 1, "result": "Failed", "error": message[:3000]}, separators=(",", ":")
    )

"""`cxbackup-dev emulator`: run the local stand-in for the vendor cloud in the foreground.

    cxbackup-dev emulator [--port N] [--s3-port N] [--seed N] [--hours N | --days N] [--start WHEN]
                      [--recordings-per-hour N] [--screen-fraction F] [--media eager|lazy|none]
                      [--error-rate F] [--error-status N] [--throttle-rate F] [--latency-ms N] ...
                      [--lying-total]
                      [--write-config PATH [--target-dir DIR]] [--key-out PATH] [--cert-out PATH]
                      [--ready-file PATH]

`--start` is `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS]` (UTC), `now`, or `now-<N>h` / `now-<N>d`; the `now`
forms are rounded down to the hour. By default the data set ends at the start of the current hour, so
an RCBS `maxAge` window finds it.

It prints the gwsUriPrefix, the S3 endpoint, the tenant key path, and `export` lines with the
emulator's own throwaway demo credentials (random per start unless --credentials-from-env takes
GWS_USERNAME, GWS_PASSWORD, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the environment; then
they are not printed). `--ready-file` receives the same facts as JSON (mode 0600) once everything is
serving. It serves on 127.0.0.1 only, until SIGTERM or SIGINT, then stops cleanly.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

from cxbackup.certs.cms import CmsError
from cxbackup_dev.emulator import DatasetSpec, Emulator, EndpointFaults, FaultConfig, format_time
from cxbackup_dev.emulator.faults import ENDPOINTS

__all__ = ["parse_start", "register", "run"]

_NOW_RE = re.compile(r"^now(?:-(\d+)([hd]))?$")


def parse_start(text: str, *, now: datetime | None = None) -> datetime:
    """`YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS][Z]` (UTC), `now`, `now-36h`, `now-2d` (rounded to the hour)."""
    text = text.strip()
    match = _NOW_RE.match(text)
    if match:
        base = (now or datetime.now(UTC)).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        if match.group(1):
            amount = int(match.group(1))
            base -= timedelta(hours=amount) if match.group(2) == "h" else timedelta(days=amount)
        return base
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--start {text!r}: use YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS], now, now-<N>h or now-<N>d"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _size_range(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition(":")
    try:
        pair = (int(lo), int(hi if sep else lo))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use MIN:MAX in bytes") from None
    if not 0 < pair[0] <= pair[1]:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 < MIN <= MAX")
    return pair


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text}: a rate is in [0, 1]")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str) -> None:
    p = sub.add_parser(
        name,
        help=help_text,
        description=f"{help_text} (a test double, on 127.0.0.1 only), in the foreground until SIGTERM or SIGINT. "
        "Prints gwsUriPrefix, the S3 endpoint, the tenant key and export lines with its throwaway credentials.",
    )
    net = p.add_argument_group("network (127.0.0.1 only)")
    net.add_argument("--port", type=int, default=0, help="recording API port (default: a free one)")
    net.add_argument("--s3-port", type=int, default=0, help="S3 endpoint port (default: a free one)")
    net.add_argument("--api-path", default="/api/v2", help="path of gwsUriPrefix (default /api/v2)")
    data = p.add_argument_group("data set")
    data.add_argument("--seed", type=int, default=1, help="everything generated follows from it (default 1)")
    data.add_argument("--tenant", default="PoD_tenant_2034", help="tenant name (settings, S3 prefix)")
    span = data.add_mutually_exclusive_group()
    span.add_argument("--hours", type=int, help="hours of recordings (default 48)")
    span.add_argument("--days", type=int, help="days of recordings")
    data.add_argument("--start", help="first hour: YYYY-MM-DD[THH:MM], now, now-36h, now-2d (default: span ago)")
    data.add_argument("--recordings-per-hour", type=int, default=10)
    data.add_argument("--screen-fraction", type=float, default=0.2, help="share with a screen recording")
    data.add_argument("--voice-size", type=_size_range, default=(4_000, 48_000), metavar="MIN:MAX")
    data.add_argument("--screen-size", type=_size_range, default=(16_000, 160_000), metavar="MIN:MAX")
    data.add_argument(
        "--media",
        choices=("eager", "lazy", "none"),
        default="eager",
        help="upload media at start (eager), on first read (lazy), or never (none: metadata only)",
    )
    data.add_argument("--encryption", choices=("AES-128", "AES-256"), default="AES-256")
    keys = p.add_argument_group("tenant key and credentials")
    keys.add_argument("--workdir", help="keys and logs go here (default: a new temporary folder, kept)")
    keys.add_argument("--tenant-key", help="use this recording key (PEM) instead of generating one")
    keys.add_argument("--tenant-cert", help="the certificate of --tenant-key")
    keys.add_argument("--key-out", help="also copy the tenant private key here (mode 0600)")
    keys.add_argument("--cert-out", help="also copy the tenant certificate here")
    keys.add_argument("--gws-username", default="rcbs@customer_tenant.com")
    keys.add_argument(
        "--credentials-from-env",
        action="store_true",
        help="take GWS_USERNAME, GWS_PASSWORD, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY from the environment",
    )
    faults = p.add_argument_group("fault injection")
    faults.add_argument("--error-rate", type=_rate, default=0.0, help="share of requests answered with an error")
    faults.add_argument("--error-status", type=int, default=503, help="status of injected errors (default 503)")
    faults.add_argument("--throttle-rate", type=_rate, default=0.0, help="share throttled (API 429, S3 SlowDown)")
    faults.add_argument("--latency-ms", type=float, default=0.0, help="delay added to every request")
    faults.add_argument("--spike-rate", type=_rate, default=0.0, help="share of requests with a latency spike")
    faults.add_argument("--spike-ms", type=float, default=0.0, help="length of a latency spike")
    faults.add_argument("--reset-rate", type=_rate, default=0.0, help="share of responses reset mid-body")
    faults.add_argument("--truncate-rate", type=_rate, default=0.0, help="share of responses cut short")
    faults.add_argument(
        "--lying-total",
        action="store_true",
        help="paged API answers report a total ten times too large and repeat the last page past the end",
    )
    faults.add_argument(
        "--fault-endpoints",
        default=",".join(ENDPOINTS),
        help=f"comma-separated endpoints the faults apply to (default {','.join(ENDPOINTS)})",
    )
    faults.add_argument("--fault-seed", type=int, default=0)
    out = p.add_argument_group("outputs")
    out.add_argument("--write-config", metavar="PATH", help="write an RCBS config.properties for this emulator")
    out.add_argument("--target-dir", help="targetDir of --write-config")
    out.add_argument("--ready-file", metavar="PATH", help="write the connection facts as JSON once serving")
    p.set_defaults(func=run)


def _fault_config(args: argparse.Namespace) -> FaultConfig | None:
    faults = EndpointFaults(
        error_rate=args.error_rate,
        error_status=args.error_status,
        throttle_rate=args.throttle_rate,
        latency_s=args.latency_ms / 1000,
        spike_rate=args.spike_rate,
        spike_s=args.spike_ms / 1000,
        reset_rate=args.reset_rate,
        truncate_rate=args.truncate_rate,
        lying_total=args.lying_total,
    )
    if not faults.active:
        return None
    endpoints = tuple(e.strip() for e in args.fault_endpoints.split(",") if e.strip())
    return FaultConfig.uniform(faults, endpoints=endpoints, seed=args.fault_seed)


def run(args: argparse.Namespace) -> int:
    hours = args.days * 24 if args.days is not None else (args.hours if args.hours is not None else 48)
    try:
        start = parse_start(args.start) if args.start else parse_start(f"now-{hours}h")
        spec = DatasetSpec(
            seed=args.seed,
            start=start,
            hours=hours,
            recordings_per_hour=args.recordings_per_hour,
            screen_fraction=args.screen_fraction,
            voice_size=args.voice_size,
            screen_size=args.screen_size,
            tenant=args.tenant,
        )
        faults = _fault_config(args)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        print(f"cxbackup-dev emulator: {exc}", file=sys.stderr)
        return 2
    if bool(args.tenant_key) != bool(args.tenant_cert):
        print("cxbackup-dev emulator: --tenant-key and --tenant-cert go together", file=sys.stderr)
        return 2
    gws_password = aws_key_id = aws_secret = None
    if args.credentials_from_env:
        names = ("GWS_USERNAME", "GWS_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        missing = [n for n in names if not os.environ.get(n)]
        if missing:
            print(f"cxbackup-dev emulator: --credentials-from-env: {', '.join(missing)} not set", file=sys.stderr)
            return 2
        gws_password = os.environ["GWS_PASSWORD"]
        aws_key_id = os.environ["AWS_ACCESS_KEY_ID"]
        aws_secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    username = os.environ["GWS_USERNAME"] if args.credentials_from_env else args.gws_username
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="cxbackup-emulator-"))

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    emu = Emulator(
        spec,
        workdir,
        faults,
        gws_username=username,
        gws_password=gws_password,
        aws_access_key_id=aws_key_id,
        aws_secret_access_key=aws_secret,
        port=args.port,
        s3_port=args.s3_port,
        api_path=args.api_path,
        media=args.media,
        encryption=args.encryption,
        tenant_key_path=Path(args.tenant_key) if args.tenant_key else None,
        tenant_cert_path=Path(args.tenant_cert) if args.tenant_cert else None,
    )
    try:
        try:
            emu.start()
        except (OSError, RuntimeError, CmsError) as exc:
            print(f"cxbackup-dev emulator: cannot start: {exc}", file=sys.stderr)
            return 1
        _write_outputs(emu, args)
        _announce(emu, args, workdir)
        stop.wait()
        print("cxbackup-dev emulator: stopping", flush=True)
    finally:
        emu.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _write_outputs(emu: Emulator, args: argparse.Namespace) -> None:
    if args.key_out:
        key_out = Path(args.key_out)
        key_out.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(emu.tenant_key_path.read_bytes())
    if args.cert_out:
        Path(args.cert_out).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(emu.tenant_cert_path, args.cert_out)
    if args.write_config:
        emu.write_config(Path(args.write_config), target_dir=args.target_dir)
    if args.ready_file:
        emu.write_ready_file(Path(args.ready_file))


def _announce(emu: Emulator, args: argparse.Namespace, workdir: Path) -> None:
    facts = emu.connection_facts()
    lines = [
        "cxbackup-dev emulator: serving on 127.0.0.1 (a test double of the vendor cloud); stop with Ctrl-C",
        f"  gwsUriPrefix  {emu.gws_uri_prefix}",
        f"  S3 endpoint   {emu.s3_endpoint}",
        f"  tenant key    {emu.tenant_key_path}  (certificate {emu.tenant_cert_path})",
        f"  recordings    {facts['recordings']} from {format_time(emu.start_ms)} to {format_time(emu.end_ms)}"
        f" (media: {emu.media_mode})",
        f"  workdir       {workdir}",
    ]
    if args.write_config:
        lines.append(f"  config        {args.write_config}")
    if args.credentials_from_env:
        lines.append("# credentials: taken from your environment (not printed)")
        lines.append(f"export AWS_ENDPOINT_URL={shlex.quote(emu.s3_endpoint)}")
    else:
        # These are the emulator's own throwaway credentials, made up for this run: printing them is
        # the point (the user exports them for the worker); they open nothing but this emulator.
        lines.append("# throwaway demo credentials of this emulator run, for your shell:")
        lines.extend(f"export {name}={shlex.quote(value)}" for name, value in emu.env().items())
    print("\n".join(lines), flush=True)

"""`cxbackup export`: encrypted contact-history, GDPR chat and subject access exports, their artifacts and retention.

    cxbackup export run --type contactHistory|gdprChat [--user ID ...] (--from T [--to T] | --last P1D)
                        --cert PEM [--encryption AES-128|AES-256] --store DIR|s3://BUCKET/PREFIX
                        [--store-endpoint URL] [--retention-days 30] [--name NAME] [--part-size BYTES]
                        [--api-uri-prefix URL] [--result-file PATH]
    cxbackup export run --type subjectAccess (--phone NUMBER | --agent NAME) ... [--from T] [--to T]
                        (--backup-target DIR | --backup-config config.properties)
                        [--decrypt-media --keyring DIR [--password-file F | --password-env VAR]]
                        [--verify-subject DIGEST] [--verify-certificate FINGERPRINT]
                        --cert PEM --store DIR|s3://BUCKET/PREFIX [the other run options]
    cxbackup export list --store DIR|s3://... [--json]
    cxbackup export sweep --store DIR|s3://... [--dry-run] [--json]
    cxbackup export download NAME --store DIR|s3://... --key KEY [--password-file F | --password-env VAR]
                             --out DIR [--overwrite] [--max-artifact-bytes N] [--max-unpacked-bytes N]

`run` refuses a certificate `cxbackup cert inspect` refuses, by the same function
(cxbackup.certs.validation.read_certificate: one PEM certificate alone, no chain, no private key, no DER;
RSA of at least 2048 bits, valid now) with exit code 2, before it asks the vendor for anything or writes
to the store.

--verify-certificate and --verify-subject (the operator passes them to a run that decrypts media) make
the run refuse, with exit code 2 and before anything is read, a --cert whose SHA-256 fingerprint is not
FINGERPRINT, or a --subject-file whose content is not what DIGEST (cxbackup.export.approval) was made of:
what the pod mounted is then not what the operator checked against the key owner's consent.

Times T are RFC 3339 (2026-08-24T00:00:00Z) or YYYY-MM-DD (midnight UTC); --to defaults to now.
gdprChat needs 1 to 10 --user ids: chat exports are per-user GDPR requests, a whole-organisation chat
export is not supported.

subjectAccess (a data-protection right of access) reads the BACKUP TARGET, not the vendor: the
recordings of the subject, found through the target's search index with the meaning of `cxbackup
search --phone/--agent/--from/--to` (a repeated option matches any of its values; without --from/--to,
every time), each packed as `recordings/<callUUID>/<callUUID>.json` (the metadata as stored) plus its
media files, as stored (vendor-encrypted) or, with --decrypt-media, decrypted with the --keyring keys
(as `cxbackup decrypt --keyring` does). The target is opened as `cxbackup search` opens it (a folder, or
config.properties with targetDir or an S3 bucket, credentials TARGET_AWS_*). A subject with no
recordings exits 0 with no artifact and says what the index holds; a file the index lists that is
missing, of another size than the index recorded, or that does not decrypt fails the export naming the
recording (exit 1, nothing stored). The phone numbers and names given are never printed, logged or put
in the result: messages and the manifest describe them by kind and count. See export/subject.py.

The vendor API prefix comes from --api-uri-prefix or CXBACKUP_EXPORT_API,
its credentials from GWS_USERNAME / GWS_PASSWORD. An S3 store uses TARGET_AWS_ACCESS_KEY_ID /
TARGET_AWS_SECRET_ACCESS_KEY (else AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, else boto3's chain),
--store-endpoint or TARGET_AWS_ENDPOINT_URL (else AWS_ENDPOINT_URL) and --store-region or
TARGET_AWS_REGION.

`run` prints a summary and each artifact (name, size, sha256, expiry) on stdout, progress on stderr,
and writes the result JSON (at most 4096 bytes, for a termination message) to --result-file. An
export without records succeeds with no artifact and says why (e.g. outside chat retention).
`download` refuses an artifact stored larger than --max-artifact-bytes (1 GiB) or unpacking to more than
--max-unpacked-bytes (4 GiB); raise them for parts made with a larger --part-size.

Exit codes: 0 done (also an empty export), 1 the export failed (or a download did not verify),
2 invalid arguments (the message names the option) or a backup target without a search index,
4 vendor credentials rejected, 5 the vendor API, the backup target or the store unavailable
(retryable: retry later).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from cxbackup.backup.errors import ConfigError, RcbsError
from cxbackup.backup.index import INDEX_DIR
from cxbackup.backup.search import MIN_PHONE_DIGITS, parse_phone
from cxbackup.certs.cms import CmsError, load_private_key
from cxbackup.certs.keyring import Keyring
from cxbackup.commands.backuptarget import TargetChoiceError
from cxbackup.commands.decrypt import UsageError, load_keyring
from cxbackup.commands.passwords import PasswordError, add_password_arguments, password_from
from cxbackup.commands.search import check_index, open_index
from cxbackup.core.errors import EXIT_CONFIG, EXIT_OK
from cxbackup.core.logs import setup_logging
from cxbackup.core.redact import Redactor, basic_token
from cxbackup.export.approval import certificate_fingerprint, subject_matches
from cxbackup.export.download import MAX_ARTIFACT_BYTES, MAX_UNPACKED_BYTES, ArchiveLimits, download_artifact
from cxbackup.export.errors import BackupUnavailableError, ExportConfigError, ExportError
from cxbackup.export.names import format_iso
from cxbackup.export.packaging import load_export_certificate
from cxbackup.export.request import DEFAULT_PART_SIZE, EXPORT_TYPES, ExportRequest, parse_time
from cxbackup.export.result import ExportResult
from cxbackup.export.retention import clean_staging, sweep
from cxbackup.export.runner import run_export
from cxbackup.export.source import API_PREFIX_ENV, ApiSource
from cxbackup.export.store import ArtifactInfo, ArtifactStore, open_store
from cxbackup.export.subject import EXPORT_TYPE as SUBJECT_ACCESS
from cxbackup.export.subject import SubjectAccessRequest, run_subject_export

__all__ = ["open_store_from_args", "register", "run"]

log = logging.getLogger("cxbackup.export")

_BACKUP_FLAGS = ("--backup-target", "--backup-config")


class _ConsoleSink:
    """Progress on stderr through logging: every part, and the record count every few seconds."""

    def __init__(self, interval: float = 5.0) -> None:
        self._interval = interval
        self._last = 0.0

    def progress(self, records: int, what: str) -> None:
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            log.info("%d %s read", records, what)

    def part_stored(self, info: ArtifactInfo) -> None:
        log.info("part %d encrypted and staged: %s (%d bytes)", info.part, info.name, info.size)

    def note(self, text: str) -> None:
        log.warning("%s", text)


def _add_store_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, metavar="DIR|s3://BUCKET/PREFIX", help="where artifacts are kept")
    p.add_argument("--store-endpoint", metavar="URL", help="S3 endpoint (default: TARGET_AWS_ENDPOINT_URL)")
    p.add_argument("--store-region", metavar="REGION", help="S3 region (default: TARGET_AWS_REGION)")
    p.add_argument("--verbose", action="store_true", help="debug logging")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description=(__doc__ or "").split("\n\n")[0])
    actions = p.add_subparsers(dest="export_action", metavar="ACTION", required=True)

    r = actions.add_parser("run", help="run one export", description="Export records as encrypted artifacts.")
    r.add_argument("--type", required=True, choices=[*EXPORT_TYPES, SUBJECT_ACCESS], help="what to export")
    r.add_argument("--user", action="append", default=[], metavar="ID", help="gdprChat subject user id (1 to 10)")
    r.add_argument(
        "--phone",
        action="append",
        default=[],
        metavar="NUMBER",
        help="subjectAccess: the subject's phone number (recordings with a number ending with it; repeatable)",
    )
    r.add_argument(
        "--agent", action="append", default=[], metavar="NAME", help="subjectAccess: agent or user name, or agent id"
    )
    r.add_argument(
        "--subject-file",
        type=Path,
        metavar="FILE",
        help="subjectAccess: the subject, one `phone:<number>` or `agent:<name>` per line (keeps the numbers "
        "out of the command line; the operator mounts it from a Secret)",
    )
    backup = r.add_mutually_exclusive_group()
    backup.add_argument("--backup-target", type=Path, metavar="DIR", help="subjectAccess: the backup target folder")
    backup.add_argument(
        "--backup-config", metavar="FILE", help="subjectAccess: config.properties naming the targetDir or S3 bucket"
    )
    r.add_argument(
        "--decrypt-media", action="store_true", help="subjectAccess: decrypt the media with --keyring into the zip"
    )
    r.add_argument(
        "--keyring",
        metavar="DIR",
        help="the tenant's recording keys and certificates (each key's password in <name>.password next to it)",
    )
    add_password_arguments(r, what="the --keyring keys without a <name>.password file")
    r.add_argument(
        "--verify-subject",
        metavar="DIGEST",
        help="subjectAccess: refuse to run unless --subject-file is what DIGEST (scrypt:<salt>:<hex>) was made of",
    )
    r.add_argument(
        "--verify-certificate",
        metavar="FINGERPRINT",
        help="refuse to run unless the --cert certificate has this SHA-256 fingerprint (AB:CD:...)",
    )
    r.add_argument("--from", dest="start", metavar="T", help="range start (RFC 3339 or YYYY-MM-DD)")
    r.add_argument("--to", dest="end", metavar="T", help="range end, exclusive (default: now)")
    r.add_argument("--last", metavar="DURATION", help="ISO 8601 duration back from now, e.g. P1D")
    r.add_argument("--cert", required=True, type=Path, metavar="PEM", help="certificate to encrypt to")
    r.add_argument("--encryption", choices=["AES-128", "AES-256"], default="AES-256", help="default AES-256")
    r.add_argument("--retention-days", type=int, default=30, help="days artifacts are kept (default 30)")
    r.add_argument("--name", default="export", help="export name, used in artifact names (default export)")
    r.add_argument(
        "--part-size",
        type=int,
        default=DEFAULT_PART_SIZE,
        metavar="BYTES",
        help=f"uncompressed bytes per artifact part (default {DEFAULT_PART_SIZE})",
    )
    r.add_argument("--api-uri-prefix", metavar="URL", help=f"vendor data API prefix (default: {API_PREFIX_ENV})")
    r.add_argument("--page-size", type=int, default=500, help="records per API request (default 500)")
    r.add_argument("--result-file", metavar="PATH", help="write the result JSON here (e.g. /dev/termination-log)")
    _add_store_arguments(r)
    r.set_defaults(func=run, export_run=_run)

    ls = actions.add_parser("list", help="list stored artifacts", description="List the artifacts in a store.")
    ls.add_argument("--json", action="store_true", help="one JSON document")
    _add_store_arguments(ls)
    ls.set_defaults(func=run, export_run=_list)

    sw = actions.add_parser(
        "sweep", help="delete expired artifacts", description="Delete artifacts whose expiry has come."
    )
    sw.add_argument("--dry-run", action="store_true", help="only say what would be deleted")
    sw.add_argument("--json", action="store_true", help="one JSON document")
    _add_store_arguments(sw)
    sw.set_defaults(func=run, export_run=_sweep)

    dl = actions.add_parser(
        "download", help="fetch, verify, decrypt and unzip an artifact", description="Get an artifact back."
    )
    dl.add_argument("artifact", metavar="NAME", help="artifact name (see export list)")
    dl.add_argument("--key", required=True, type=Path, help="private key of the certificate (PEM or DER)")
    add_password_arguments(dl, legacy_flag=True)
    dl.add_argument("--out", required=True, type=Path, metavar="DIR", help="directory to extract into")
    dl.add_argument("--overwrite", action="store_true", help="replace files that exist in DIR")
    dl.add_argument(
        "--max-artifact-bytes",
        type=int,
        default=MAX_ARTIFACT_BYTES,
        metavar="BYTES",
        help=f"largest stored artifact read (default {MAX_ARTIFACT_BYTES}; held in memory twice)",
    )
    dl.add_argument(
        "--max-unpacked-bytes",
        type=int,
        default=MAX_UNPACKED_BYTES,
        metavar="BYTES",
        help=f"most an artifact may unpack to (default {MAX_UNPACKED_BYTES})",
    )
    _add_store_arguments(dl)
    dl.set_defaults(func=run, export_run=_download)


def open_store_from_args(args: argparse.Namespace, env: Mapping[str, str]) -> ArtifactStore:
    """The store of --store, with S3 settings from the flags or the environment."""
    return open_store(
        args.store,
        endpoint_url=args.store_endpoint or env.get("TARGET_AWS_ENDPOINT_URL") or None,
        access_key_id=env.get("TARGET_AWS_ACCESS_KEY_ID") or env.get("AWS_ACCESS_KEY_ID") or None,
        secret_access_key=env.get("TARGET_AWS_SECRET_ACCESS_KEY") or env.get("AWS_SECRET_ACCESS_KEY") or None,
        region=args.store_region or env.get("TARGET_AWS_REGION") or None,
    )


def run(args: argparse.Namespace) -> int:
    # the engine's loggers are all below cxbackup.export
    setup_logging(
        args.verbose,
        logger="cxbackup.export",
        fmt="%(asctime)s %(levelname)s %(name)s - %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        code: int = args.export_run(args, os.environ)
    except ExportError as exc:
        print(f"cxbackup export {args.export_action}: {_redactor(os.environ).clean(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except CmsError as exc:  # key or certificate files
        print(f"cxbackup export {args.export_action}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return code


def _request(args: argparse.Namespace) -> ExportRequest:
    if args.last and (args.start or args.end):
        raise ExportConfigError("give either --last or --from/--to, not both")
    if args.end and not args.start:
        raise ExportConfigError("--to needs --from")
    return ExportRequest(
        name=args.name,
        type=args.type,
        start=parse_time(args.start) if args.start else None,
        end=parse_time(args.end) if args.end else None,
        last=args.last,
        users=tuple(args.user),
        encryption=args.encryption,
        retention_days=args.retention_days,
        part_size=args.part_size,
    )


def _write_result(path: str | None, text: str) -> None:
    if not path:
        return
    try:
        with open(path, "w", encoding="utf-8") as fh:  # in place: /dev/termination-log is a bind mount
            fh.write(text)
    except OSError as exc:
        log.error("cannot write the result to %s: %s", path, exc.strerror or exc)


def _redactor(env: Mapping[str, str]) -> Redactor:
    """Masks the run's secrets (and the Basic token of the vendor credentials) in what it reports."""
    known = [env.get(k) for k in ("GWS_PASSWORD", "TARGET_AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY")]
    user, password = env.get("GWS_USERNAME", ""), env.get("GWS_PASSWORD", "")
    if user and password:
        known.append(basic_token(user, password))
    return Redactor(known)


def _failed_before_start(args: argparse.Namespace, exc: ExportError, redactor: Redactor) -> int:
    message = redactor.clean(str(exc))
    if args.result_file:
        result = ExportResult(args.name, args.type, "", datetime.now(UTC).replace(microsecond=0))
        result.fail_by(exc, message)
        _write_result(args.result_file, result.to_json())
    print(f"cxbackup export run: {message}", file=sys.stderr)
    return exc.exit_code


def _run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    redactor = _redactor(env)
    if args.type == SUBJECT_ACCESS:
        return _run_subject(args, env, redactor)
    try:
        _refuse_subject_options(args)
        request = _request(args)
        # refused before the vendor or the store is touched: the rules of `cert inspect`
        certificate = _certificate(args)
        source = ApiSource.from_env(env, args.api_uri_prefix, page_size=args.page_size)
        store = open_store_from_args(args, env)
    except ExportError as exc:
        return _failed_before_start(args, exc, redactor)
    try:
        result = run_export(request, source, store, certificate, sink=_ConsoleSink(), redactor=redactor)
    finally:
        source.close()
        store.close()
    _write_result(args.result_file, result.to_json())
    _print_result(result)
    return result.exit_code


_SUBJECT_OPTIONS = (
    "phone", "agent", "subject_file", "backup_target", "backup_config", "decrypt_media", "keyring", "verify_subject",
)  # fmt: skip


def _certificate(args: argparse.Namespace) -> x509.Certificate:
    """--cert, read and checked as `cxbackup cert inspect` does; with --verify-certificate, only the
    certificate of that fingerprint."""
    certificate = load_export_certificate(args.cert, datetime.now(UTC))
    expected = args.verify_certificate
    if expected is not None and certificate_fingerprint(certificate) != expected.strip().upper():
        raise ExportConfigError(
            f"--cert {args.cert}: the certificate's SHA-256 fingerprint is {certificate_fingerprint(certificate)}, "
            f"not {expected} (--verify-certificate): it is not the certificate the run was approved for"
        )
    return certificate


def _verify_subject(args: argparse.Namespace) -> None:
    """With --verify-subject: the --subject-file's bytes are what its digest was made of, else ExportConfigError
    (naming neither the subject nor the file's content)."""
    if args.verify_subject is None:
        return
    if args.subject_file is None:
        raise ExportConfigError("--verify-subject needs --subject-file (the subject it checks)")
    try:
        data = args.subject_file.read_bytes()
    except OSError as exc:
        raise ExportConfigError(f"--subject-file {args.subject_file}: cannot be read ({type(exc).__name__})") from None
    if not subject_matches(data, args.verify_subject):
        raise ExportConfigError(
            f"--subject-file {args.subject_file}: its content is not the subject the run was approved for "
            "(--verify-subject): the Secret changed after it was checked"
        )


def read_subject_file(path: Path) -> tuple[list[str], list[str]]:
    """(phone numbers, agent names) of a subject file: `phone:<number>` or `agent:<name>` per line, blank
    lines and `#` comments ignored. Errors name the line, never its content (it is personal data)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportConfigError(f"--subject-file {path}: cannot be read ({type(exc).__name__})") from None
    phones: list[str] = []
    agents: list[str] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        kind, sep, value = line.partition(":")
        if not sep or kind.strip().lower() not in ("phone", "agent") or not value.strip():
            raise ExportConfigError(f"--subject-file {path}: line {n} is not `phone:<number>` or `agent:<name>`")
        (phones if kind.strip().lower() == "phone" else agents).append(value.strip())
    if not phones and not agents:
        raise ExportConfigError(f"--subject-file {path}: names no phone number and no agent")
    return phones, agents


def _refuse_subject_options(args: argparse.Namespace) -> None:
    for dest in _SUBJECT_OPTIONS:
        if getattr(args, dest):
            flag = "--" + dest.replace("_", "-")
            raise ExportConfigError(f"{flag} applies only to --type {SUBJECT_ACCESS}")


def _subject_request(args: argparse.Namespace) -> SubjectAccessRequest:
    """The request of `--type subjectAccess`; errors name the option, never a phone number."""
    if args.user:
        raise ExportConfigError(f"--user applies to gdprChat; --type {SUBJECT_ACCESS} takes --phone and --agent")
    if args.last:
        raise ExportConfigError(f"--last does not apply to --type {SUBJECT_ACCESS}: give --from/--to, or neither")
    phone_texts, agents = list(args.phone), list(args.agent)
    if args.subject_file is not None:
        more_phones, more_agents = read_subject_file(args.subject_file)
        phone_texts += more_phones
        agents += more_agents
    phones = []
    for n, text in enumerate(phone_texts, 1):
        try:
            phones.append(parse_phone(text))
        except ValueError:
            raise ExportConfigError(
                f"--phone: value {n} is not a phone number (digits, optionally with + - ( ) and spaces; at least "
                f"{MIN_PHONE_DIGITS} digits)"
            ) from None
    times = {}
    for flag, text in (("--from", args.start), ("--to", args.end)):
        try:
            times[flag] = parse_time(text) if text else None
        except ExportConfigError as exc:
            raise ExportConfigError(f"{flag}: {exc}") from None
    if args.backup_target is None and args.backup_config is None:
        raise ExportConfigError(f"--type {SUBJECT_ACCESS} reads the backup: give --backup-target or --backup-config")
    if args.decrypt_media != bool(args.keyring):
        raise ExportConfigError("--decrypt-media and --keyring go together (the keyring decrypts the media)")
    return SubjectAccessRequest(
        name=args.name,
        phones=tuple(phones),
        agents=tuple(agents),
        start=times["--from"],
        end=times["--to"],
        decrypt_media=args.decrypt_media,
        encryption=args.encryption,
        retention_days=args.retention_days,
        part_size=args.part_size,
    )


def _run_subject(args: argparse.Namespace, env: Mapping[str, str], redactor: Redactor) -> int:
    """`export run --type subjectAccess`: the backup target and its index opened as `cxbackup search` opens
    them, then the engine (export/subject.py)."""
    with contextlib.ExitStack() as stack:
        try:
            _verify_subject(args)  # before the subject is read for the request
            request = _subject_request(args)
            certificate = _certificate(args)
            keyring = _subject_keyring(args) if request.decrypt_media else None
            try:
                index = open_index(args.backup_target, args.backup_config, stack, _BACKUP_FLAGS)
            except TargetChoiceError as exc:
                raise ExportConfigError(str(exc)) from None
            except RcbsError as exc:
                if isinstance(exc, ConfigError):
                    raise ExportConfigError(f"--backup-config: {exc}") from None
                raise BackupUnavailableError(str(exc)) from None
            problem = check_index(index)
            if problem is not None:
                raise ExportConfigError(problem)  # the hint is a `cxbackup index` command line
            store = open_store_from_args(args, env)
        except ExportError as exc:
            return _failed_before_start(args, exc, redactor)
        try:
            result = run_subject_export(
                request,
                index.target,
                index.root / INDEX_DIR,
                store,
                certificate,
                keyring=keyring,
                where=index.where,
                sink=_ConsoleSink(),
                redactor=redactor,
            )
        finally:
            store.close()
    _write_result(args.result_file, result.to_json())
    _print_result(result)
    return result.exit_code


def _subject_keyring(args: argparse.Namespace) -> Keyring:
    try:
        keyring = load_keyring(argparse.Namespace(**{**vars(args), "key": None}))
    except UsageError as exc:
        raise ExportConfigError(str(exc)) from None
    except CmsError as exc:
        raise ExportConfigError(f"--keyring: {exc}") from None
    for unusable in keyring.unusable:
        log.warning("%s; media encrypted to it cannot be decrypted", unusable)
    return keyring


def _print_result(result: ExportResult) -> None:
    rng = result.range.describe() if result.range else "-"
    users = f" users {', '.join(result.users)}" if result.users else ""
    head = f"export {result.name} ({result.type}{users}) {rng}: {result.state}"
    if not result.succeeded:
        print(f"{head}: {result.error}", file=sys.stderr)
        return
    print(f"{head}, {result.records} records, {len(result.artifacts)} artifacts, {result.bytes} bytes")
    for info in result.artifacts:
        print(f"  {info.name}  {info.size} bytes  sha256 {info.sha256}  expires {format_iso(info.expires_at)}")
    for note in result.notes:
        print(f"  note: {note}")


def _list(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    now = datetime.now(UTC)
    store = open_store_from_args(args, env)
    try:
        artifacts = store.list()
    finally:
        store.close()
    if args.json:
        doc: dict[str, Any] = {
            "store": store.location,
            "artifacts": [{**a.to_json(), "expired": a.is_expired(now)} for a in artifacts],
        }
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    if not artifacts:
        print(f"no artifacts in {store.location}")
        return EXIT_OK
    for a in artifacts:
        state = "EXPIRED" if a.is_expired(now) else "kept"
        print(f"{a.name}  {a.size} bytes  sha256 {a.sha256}  expires {format_iso(a.expires_at)}  {state}")
    return EXIT_OK


def _sweep(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    now = datetime.now(UTC)
    store = open_store_from_args(args, env)
    try:
        deleted = sweep(store, now, dry_run=args.dry_run)
        staging = clean_staging(store, now, dry_run=args.dry_run)
    finally:
        store.close()
    verb = "would delete" if args.dry_run else "deleted"
    if args.json:
        doc = {"store": store.location, "dryRun": args.dry_run, "deleted": [a.to_json() for a in deleted]}
        doc["stagingRemoved"] = staging
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    for a in deleted:
        print(f"{verb} {a.name} (expired {format_iso(a.expires_at)})")
    for staging_id in staging:
        print(f"{verb} the staging area {staging_id} of a run that never finished")
    print(f"{verb} {len(deleted)} expired artifact(s) in {store.location}")
    return EXIT_OK


def _download(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    try:
        password = password_from(args)
    except PasswordError as exc:
        raise ExportConfigError(str(exc)) from None
    key = load_private_key(args.key, password)
    store = open_store_from_args(args, env)
    try:
        limits = ArchiveLimits(max_artifact_bytes=args.max_artifact_bytes, max_unpacked_bytes=args.max_unpacked_bytes)
        result = download_artifact(store, args.artifact, key, args.out, overwrite=args.overwrite, limits=limits)
    finally:
        store.close()
    m = result.manifest
    last = " (last)" if m.get("last") else ""
    print(f"{args.artifact}: sha256 verified, decrypted; part {m.get('part')}{last} of {m.get('export')}")
    for f in result.files:
        records = f" {f.records} records" if f.records is not None else ""
        print(f"  {f.path}  {f.size} bytes{records}  sha256 {f.sha256}")
    return EXIT_OK

"""`cxbackup cert`: generate and inspect recording certificates, as the vendor's openssl steps and upload
panel do.

    cxbackup cert generate --cn CN --country C --state ST --org O --days N [--key-size 2048|3072|4096]
                           --out-key FILE --out-cert FILE [--pkcs8 FILE] [--force]
    cxbackup cert inspect CERT [--key KEY [--password-file F | --password-env VAR]] [--json]

generate writes the key ('BEGIN RSA PRIVATE KEY', mode 0600), the self-signed certificate and, with
--pkcs8, the key again as unencrypted PKCS#8 (the Azure private.pem). Every file goes to a temporary
name and is linked or renamed into place; an existing output file is never replaced without --force,
because losing a key loses the recordings encrypted to it.

inspect prints Issued To, Issued By, Serial Number, Subject DN, Issuer DN, Not Before, Expires, key
size, SHA-256 fingerprint and, with --key, Key Details; --json prints the same as one JSON object with
`valid`, `reason`, `message` and `warnings` added. CERT is checked by the one function `cxbackup export run`
checks its --cert with (cxbackup.certs.validation.read_certificate): one PEM certificate alone, no chain,
no private key or other PEM block, not DER.

The password of an encrypted key comes from a file or an environment variable (cxbackup.commands.passwords);
the old `--password P` still works but warns, since other users of the machine can see it.

Exit codes: 0 fine (a warning on stderr when the certificate expires within 30 days), 1 the certificate
or key is not usable (one line on stderr, ending with the reason code in brackets), 2 a usage error or
a file that cannot be read or written. Keys and passwords are never printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cxbackup.certs.generate import KEY_SIZES, ParameterInvalid, generate_pair, to_pkcs8
from cxbackup.certs.validation import CertificateInfo, CertificateInvalid, Reason, inspect_certificate
from cxbackup.commands.passwords import PasswordError, add_password_arguments, password_from
from cxbackup.core.errors import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from cxbackup.core.files import NewFile

__all__ = ["EXPIRY_WARNING", "register", "run"]

EXPIRY_WARNING = timedelta(days=30)
"""inspect warns when the certificate expires sooner than this."""

_FLAGS = {
    "cn": "--cn",
    "country": "--country",
    "state": "--state",
    "org": "--org",
    "days": "--days",
    "key_size": "--key-size",
}
_KEY_REASONS = (Reason.KEY_INVALID, Reason.PASSWORD_REQUIRED, Reason.WRONG_PASSWORD)


class _UsageError(Exception):
    """A problem with the arguments or the files: exit 2."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description=help_text)
    actions = p.add_subparsers(dest="cert_action", metavar="ACTION", required=True)

    gen = actions.add_parser(
        "generate",
        help="generate an RSA key and a self-signed recording certificate",
        description="Generate an RSA private key and a self-signed X.509 certificate, like "
        "`openssl genrsa` and `openssl req -new -x509 -subj /CN=../C=../ST=../O=..`.",
    )
    gen.add_argument("--cn", required=True, help="Common Name, the name of the recording solution")
    gen.add_argument("--country", required=True, help="Country, a two-letter code such as US")
    gen.add_argument("--state", required=True, help="State or province, in full")
    gen.add_argument("--org", required=True, help="Organization, the exact legal name")
    gen.add_argument("--days", required=True, type=int, help="validity in days, e.g. 3650")
    gen.add_argument(
        "--key-size",
        type=int,
        default=2048,
        help=f"RSA key size in bits: {', '.join(str(s) for s in KEY_SIZES)} (default 2048)",
    )
    gen.add_argument("--out-key", required=True, type=Path, help="private key file to write (mode 0600)")
    gen.add_argument("--out-cert", required=True, type=Path, help="certificate file to write")
    gen.add_argument("--pkcs8", type=Path, help="also write the key as unencrypted PKCS#8 PEM (Azure's private.pem)")
    gen.add_argument("--force", action="store_true", help="replace output files that already exist")
    gen.set_defaults(func=run)

    ins = actions.add_parser(
        "inspect",
        help="show and validate a recording certificate (and its private key)",
        description="Show a certificate as the upload panel does and check it can encrypt recordings.",
    )
    ins.add_argument("cert", type=Path, metavar="CERT", help="PEM certificate file (the certificate alone)")
    ins.add_argument("--key", type=Path, help="PEM private key file to check against the certificate")
    add_password_arguments(ins, what="an encrypted --key", legacy_flag=True)
    ins.add_argument("--json", action="store_true", help="print one JSON object")
    ins.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    action: str = args.cert_action
    try:
        if action == "generate":
            return _generate(args)
        return _inspect(args)
    except _UsageError as exc:
        print(f"cxbackup cert {action}: {exc}", file=sys.stderr)
        return EXIT_CONFIG


# --- generate ---------------------------------------------------------------------------------------


def _generate(args: argparse.Namespace) -> int:
    outputs: list[tuple[Path, str]] = [(args.out_key, "--out-key"), (args.out_cert, "--out-cert")]
    if args.pkcs8 is not None:
        outputs.append((args.pkcs8, "--pkcs8"))
    seen: dict[Path, str] = {}
    for path, flag in outputs:
        resolved = path.resolve()
        if resolved in seen:
            raise _UsageError(f"{seen[resolved]} and {flag} name the same file {path}")
        seen[resolved] = flag
        if path.exists() and not args.force:
            raise _UsageError(
                f"{path} ({flag}) already exists; not replacing it, since losing a key or certificate "
                "loses the recordings encrypted to it (pass --force to replace it)"
            )
        if not path.parent.is_dir():
            raise _UsageError(f"directory {path.parent} ({flag}) does not exist")
    try:
        key_pem, cert_pem = generate_pair(
            args.cn, args.country, args.state, args.org, args.days, args.key_size, now=datetime.now(UTC)
        )
    except ParameterInvalid as exc:
        raise _UsageError(f"{_FLAGS.get(exc.parameter, exc.parameter)}: {exc.message}") from None
    files: list[tuple[Path, bytes, int]] = [(args.out_key, key_pem, 0o600), (args.out_cert, cert_pem, 0o644)]
    if args.pkcs8 is not None:
        files.append((args.pkcs8, to_pkcs8(key_pem), 0o600))
    _write_all(files, replace=args.force)
    print(f"wrote {args.out_key} (RSA {args.key_size}-bit private key, 'BEGIN RSA PRIVATE KEY', mode 0600)")
    if args.pkcs8 is not None:
        print(f"wrote {args.pkcs8} (the same key as unencrypted PKCS#8, 'BEGIN PRIVATE KEY', mode 0600)")
    print(f"wrote {args.out_cert} (self-signed X.509 certificate)")
    info = inspect_certificate(cert_pem, key_pem, now=datetime.now(UTC))
    print(_render(info))
    print(
        "Keep the private key safe, and keep it after the certificate expires: "
        "recordings encrypted to it cannot be played back without it."
    )
    return EXIT_OK


def _write_all(files: list[tuple[Path, bytes, int]], *, replace: bool) -> None:
    """Write every file to a temporary name first, then move each into place (cxbackup.core.files)."""
    staged: list[NewFile] = []
    try:
        for path, data, mode in files:
            new = NewFile(path, mode)
            staged.append(new)
            new.write(data)
            new.close()
        for new in staged:
            if not new.place(replace=replace):
                raise _UsageError(f"{new.path} appeared while writing; not replacing it (pass --force)")
    except OSError as exc:
        raise _UsageError(f"cannot write {exc.filename or ''}: {exc.strerror or exc}") from None
    finally:
        for new in staged:
            new.discard()


# --- inspect ----------------------------------------------------------------------------------------


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _password(args: argparse.Namespace) -> bytes | None:
    if args.key is None and (args.password is not None or args.password_file or args.password_env):
        raise _UsageError("--password-file, --password-env and --password need --key")
    try:
        return password_from(args)
    except PasswordError as exc:
        raise _UsageError(str(exc)) from None


def _render(info: CertificateInfo) -> str:
    rows = [
        ("Issued To", info.issued_to),
        ("Issued By", info.issued_by),
        ("Serial Number", info.serial_number),
        ("Subject DN", info.subject_dn),
        ("Issuer DN", info.issuer_dn),
        ("Not Before", f"{info.not_before:%Y-%m-%d %H:%M:%S} UTC"),
        ("Expires", f"{info.not_after:%Y-%m-%d} ({info.not_after:%Y-%m-%d %H:%M:%S} UTC)"),
        ("Key Size", f"{info.key_size} bits" if info.key_size else "-"),
        ("SHA-256 Fingerprint", info.fingerprint),
    ]
    if info.key_details is not None:
        rows.append(("Key Details", info.key_details))
    width = max(len(label) for label, _ in rows) + 1
    return "\n".join(f"{label + ':':<{width}} {value}" for label, value in rows)


def _expiry_warning(info: CertificateInfo, now: datetime) -> str | None:
    left = info.not_after - now
    if left > EXPIRY_WARNING:
        return None
    when = "in less than a day" if left.days < 1 else f"in {left.days} day{'s' if left.days != 1 else ''}"
    return (
        f"certificate expires {when}, on {info.not_after:%Y-%m-%d %H:%M:%S} UTC; install a new key and "
        "certificate before then, and keep this key for the recordings already encrypted to it"
    )


def _inspect(args: argparse.Namespace) -> int:
    password = _password(args)
    cert_pem = _read(args.cert, "certificate")
    key_pem = _read(args.key, "private key") if args.key is not None else None
    now = datetime.now(UTC)
    result: dict[str, Any]
    try:
        info = inspect_certificate(cert_pem, key_pem, password, now=now)
    except CertificateInvalid as exc:
        where = args.key if exc.reason in _KEY_REASONS else args.cert
        message = exc.message
        if exc.reason is Reason.PASSWORD_REQUIRED:
            message += "; pass it with --password-file or --password-env"
        elif exc.reason is Reason.WRONG_PASSWORD:
            message += " (check --password-file or --password-env)"
        if args.json:
            result = exc.info.to_dict() if exc.info is not None else {}
            result.update(valid=False, reason=str(exc.reason), message=message, warnings=[])
            print(json.dumps(result, indent=2))
        elif exc.info is not None:
            print(_render(exc.info))
        print(f"cxbackup cert inspect: {where}: {message} [{exc.reason}]", file=sys.stderr)
        return EXIT_FAILED
    warning = _expiry_warning(info, now)
    if args.json:
        result = info.to_dict()
        result.update(valid=True, reason=None, message=None, warnings=[warning] if warning else [])
        print(json.dumps(result, indent=2))
    else:
        print(_render(info))
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return EXIT_OK

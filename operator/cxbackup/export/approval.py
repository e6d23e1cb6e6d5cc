"""What the operator approved for a decrypting subject access run, checked again by its pod.

The operator checks an ExportJob with `decryptMedia` against the key owner's consent and reads, at that
moment, the subject Secret and the requester's certificate. The pod mounts those Secrets later, when the
kubelet starts it: a Secret deleted and created again in between would reach the pod unchecked. So the
operator hands the pod what it approved, and the pod refuses to run when what it mounted differs:

- `subject_digest(data, salt)`: a digest of the subject file's bytes. The subject is personal data (a
  phone number has few enough values to be guessed from a plain hash), so it is scrypt (memory-hard) with
  the ExportJob's uid as salt, written `scrypt:<salt>:<hex>`; `subject_matches` checks a file against it.
- `certificate_fingerprint(cert)`: the certificate's SHA-256 fingerprint, as status.fingerprint shows it.

Pure functions, no I/O: the operator (cxbackup.controller.export) and the worker (cxbackup.commands.export)
both use them.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography import x509

from cxbackup.certs.validation import fingerprint

__all__ = ["certificate_fingerprint", "subject_digest", "subject_matches"]

_SCHEME = "scrypt"
_N, _R, _P = 2**14, 8, 1  # 16 MiB and a few tens of milliseconds per digest


def subject_digest(data: bytes, salt: str) -> str:
    """`scrypt:<salt>:<hex>` of the subject file's bytes (salt: the ExportJob's uid; no ':' in it)."""
    if not salt or ":" in salt:
        raise ValueError("the salt must be non-empty and hold no ':'")
    digest = hashlib.scrypt(data, salt=salt.encode("utf-8"), n=_N, r=_R, p=_P, dklen=32)
    return f"{_SCHEME}:{salt}:{digest.hex()}"


def subject_matches(data: bytes, expected: str) -> bool:
    """Whether `data` is what `expected` (a `subject_digest`) was made of; False for a malformed one."""
    scheme, _, rest = expected.partition(":")
    salt, _, _ = rest.partition(":")
    if scheme != _SCHEME or not salt:
        return False
    return hmac.compare_digest(subject_digest(data, salt), expected)


def certificate_fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint, 'AB:CD:..' (cxbackup.certs.validation.fingerprint)."""
    return fingerprint(cert)

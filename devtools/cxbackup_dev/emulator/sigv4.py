"""Checking AWS Signature Version 4 on requests to the emulated S3, as S3 does.

moto accepts any credentials, but the vendor's S3 refuses a wrong access key id or secret; clients'
verify modes and error handling are only tested when that happens. `check_request` recomputes the
SigV4 signature of a request (Authorization header or presigned query) with the secret of the key id
it names and returns the S3 error code S3 would answer with, or None when the request is authentic.
The canonical request follows the AWS specification for S3 (path not normalised); the raw path and
query as sent are tried first, then their RFC 3986 re-encoding, so clients that escape differently are
still accepted when their signature is right.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from urllib.parse import parse_qsl, quote, unquote

__all__ = ["AuthFailure", "check_request"]


@dataclass(frozen=True)
class AuthFailure:
    """Why S3 would refuse the request: an S3 error code and message (status 403)."""

    code: str
    message: str
    access_key_id: str | None = None


_ALGORITHM = "AWS4-HMAC-SHA256"


def _sign(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    k = _sign(f"AWS4{secret}".encode(), date)
    k = _sign(k, region)
    k = _sign(k, service)
    return _sign(k, "aws4_request")


def _encode(text: str, safe: str) -> str:
    return quote(text, safe=safe)


def _canonical_queries(raw_query: str, drop: str | None) -> list[str]:
    pairs = [p.partition("=") for p in raw_query.split("&") if p]
    raw = sorted((k, v) for k, _, v in pairs if k != drop)
    first = "&".join(f"{k}={v}" for k, v in raw)
    decoded = [(k, v) for k, v in parse_qsl(raw_query, keep_blank_values=True) if k != drop]
    second = "&".join(sorted(f"{_encode(k, '-_.~')}={_encode(v, '-_.~')}" for k, v in decoded))
    return [first] if first == second else [first, second]


def _canonical_paths(raw_path: str) -> list[str]:
    second = _encode(unquote(raw_path), "/-_.~")
    return [raw_path] if raw_path == second else [raw_path, second]


def check_request(
    method: str,
    target: str,
    headers: Message,
    credentials: Mapping[str, str],
) -> AuthFailure | None:
    """None when `target` (path?query as sent) is signed by a known key id with its secret.

    `credentials` maps access key ids to secret keys. Only SigV4 is accepted (what boto3 uses for S3).
    """
    raw_path, _, raw_query = target.partition("?")
    auth = headers.get("Authorization")
    query = dict(parse_qsl(raw_query, keep_blank_values=True))
    if auth:
        if not auth.startswith(_ALGORITHM + " "):
            key_id = auth[4:].split(":", 1)[0] if auth.startswith("AWS ") else None
            if key_id is not None and key_id not in credentials:
                return AuthFailure(
                    "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.", key_id
                )
            return AuthFailure("AccessDenied", "Only AWS Signature Version 4 is supported.", key_id)
        fields = {}
        for part in auth[len(_ALGORITHM) + 1 :].split(","):
            name, _, value = part.strip().partition("=")
            fields[name] = value
        credential, signed, signature = (
            fields.get("Credential", ""),
            fields.get("SignedHeaders", ""),
            fields.get("Signature", ""),
        )
        amz_date = headers.get("X-Amz-Date") or ""
        payload_hash = headers.get("X-Amz-Content-SHA256") or "UNSIGNED-PAYLOAD"
        drop = None
    elif "X-Amz-Signature" in query:
        if query.get("X-Amz-Algorithm") != _ALGORITHM:
            return AuthFailure("AuthorizationQueryParametersError", "Only AWS4-HMAC-SHA256 is supported.")
        credential = query.get("X-Amz-Credential", "")
        signed = query.get("X-Amz-SignedHeaders", "")
        signature = query.get("X-Amz-Signature", "")
        amz_date = query.get("X-Amz-Date", "")
        payload_hash = "UNSIGNED-PAYLOAD"
        drop = "X-Amz-Signature"
    else:
        return AuthFailure("AccessDenied", "Access Denied")

    scope = credential.split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        return AuthFailure("AuthorizationHeaderMalformed", "The authorization header is malformed.")
    key_id, date, region, service = scope[:4]
    secret = credentials.get(key_id)
    if secret is None:
        return AuthFailure(
            "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.", key_id
        )
    signed_names = [h for h in signed.split(";") if h]
    canonical_headers = ""
    for name in signed_names:
        values = headers.get_all(name) or []
        canonical_headers += f"{name}:{','.join(' '.join(str(v).split()) for v in values)}\n"
    sts_scope = f"{date}/{region}/{service}/aws4_request"
    key = _signing_key(secret, date, region, service)
    for path in _canonical_paths(raw_path):
        for canonical_query in _canonical_queries(raw_query, drop):
            canonical = "\n".join([method.upper(), path, canonical_query, canonical_headers, signed, payload_hash])
            sts = "\n".join([_ALGORITHM, amz_date, sts_scope, hashlib.sha256(canonical.encode()).hexdigest()])
            expected = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
            if hmac.compare_digest(expected, signature):
                return None
    return AuthFailure(
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
        key_id,
    )

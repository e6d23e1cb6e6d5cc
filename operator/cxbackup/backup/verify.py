"""Verification mode (`-verify s3`): check the credentials and every bucket the vendor names; download nothing.

1. GWS: fetch the settings (proves GWS_USERNAME/GWS_PASSWORD and gwsUriPrefix work).
2. S3: for each storage entry, list at most one key under its prefix (`ListObjectsV2`, MaxKeys=1),
   logging RCBS's lines:

       Checking for Key: PoD_tenant_2034/ Bucket: stage-recordings-us-east-1
       Successfully Verified Connection to stage-recordings-us-east-1/PoD_tenant_2034/
   or
       Failed to Verify Connection to stage-recordings-us-east-1/PoD_tenant_2034/: <reason>

The result is one `BucketCheck` per entry (plus the GWS outcome); the command exits non-zero when
anything failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import botocore.exceptions

from cxbackup.backup.config import Credentials, RcbsConfig
from cxbackup.backup.connections import make_vendor_client, source_s3_options
from cxbackup.backup.errors import RcbsError
from cxbackup.backup.s3source import classify_client_error, make_s3_client
from cxbackup.backup.vendor_client import StorageEntry, VendorClient
from cxbackup.core.redact import Redactor, redact_url

__all__ = ["BucketCheck", "VerifyResult", "make_prefix_lister", "run_verify"]

log = logging.getLogger("cxbackup.backup.verify")

PrefixLister = Callable[[StorageEntry], None]


@dataclass(frozen=True)
class BucketCheck:
    bucket: str
    prefix: str
    ok: bool
    reason: str | None = None


@dataclass(frozen=True)
class VerifyResult:
    gws_ok: bool
    gws_reason: str | None
    buckets: tuple[BucketCheck, ...]

    @property
    def ok(self) -> bool:
        return self.gws_ok and bool(self.buckets) and all(b.ok for b in self.buckets)


def make_prefix_lister(config: RcbsConfig, credentials: Credentials) -> PrefixLister:
    """Lists one key under an entry's prefix with the vendor S3 credentials; raises RcbsError on failure."""
    options = source_s3_options(config, credentials)
    clients: dict[str | None, object] = {}

    def list_one(entry: StorageEntry) -> None:
        region = options.region or entry.aws_region
        if region not in clients:
            clients[region] = make_s3_client(options, region)
        client = clients[region]
        try:
            client.list_objects_v2(Bucket=entry.bucket, Prefix=entry.prefix, MaxKeys=1)  # type: ignore[attr-defined]
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise classify_client_error(exc, f"s3://{entry.bucket}/{entry.prefix}") from exc

    return list_one


def run_verify(
    config: RcbsConfig,
    credentials: Credentials,
    *,
    vendor: VendorClient | None = None,
    lister: PrefixLister | None = None,
) -> VerifyResult:
    """Check GWS and S3 access (see the module docstring); raises only ConfigError (missing settings)."""
    redactor = Redactor(credentials.secrets())
    if vendor is None:
        credentials.require_gws()  # a ConfigError (exit 2), not a failed check
    try:
        vendor = vendor or make_vendor_client(config, credentials)
        settings = vendor.settings()
    except RcbsError as exc:
        reason = redactor.clean(str(exc))
        log.error("Could not verify the connection to %s: %s", redact_url(config.settings_url), reason)
        return VerifyResult(gws_ok=False, gws_reason=reason, buckets=())
    log.info("Successfully verified the login to %s", redact_url(config.settings_url))
    log.info("BucketVerify:[%s]", ", ".join(f"{e.bucket}/{e.prefix.rstrip('/')}" for e in settings.storage))
    if config.aws_proxy_url:
        log.info("Using proxy %s:%s for Amazon S3", config.aws_proxy_host, config.aws_proxy_port)
    else:
        log.info("Proxy is not enabled for Amazon S3 host: port:")
    if not settings.storage:
        log.error("The settings endpoint lists no storage entries: nothing to verify")
        return VerifyResult(gws_ok=True, gws_reason=None, buckets=())
    try:
        lister = lister or make_prefix_lister(config, credentials)
    except RcbsError as exc:
        reason = redactor.clean(str(exc))
        log.error("Cannot check S3: %s", reason)
        return VerifyResult(
            gws_ok=True,
            gws_reason=None,
            buckets=tuple(BucketCheck(e.bucket, e.prefix, False, reason) for e in settings.storage),
        )
    log.info("Attempting to validate connection to AWS s3")
    checks: list[BucketCheck] = []
    for entry in settings.storage:
        log.info("Checking for Key: %s Bucket: %s", entry.prefix, entry.bucket)
        try:
            lister(entry)
        except RcbsError as exc:
            reason = redactor.clean(str(exc))
            log.error("Failed to Verify Connection to %s/%s: %s", entry.bucket, entry.prefix, reason)
            checks.append(BucketCheck(entry.bucket, entry.prefix, False, reason))
            continue
        log.info("Successfully Verified Connection to %s/%s", entry.bucket, entry.prefix)
        checks.append(BucketCheck(entry.bucket, entry.prefix, True))
    return VerifyResult(gws_ok=True, gws_reason=None, buckets=tuple(checks))

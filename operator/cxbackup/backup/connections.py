"""Building the vendor client, the S3 media source and the target from a config and credentials.

The only place that turns `RcbsConfig` + `Credentials` into live clients; the worker, verify mode and
the audit take the results (or fakes) as arguments.
"""

from __future__ import annotations

import logging

from cxbackup.backup.config import Credentials, RcbsConfig
from cxbackup.backup.crtsource import CrtS3MediaSource, select_media_transfer
from cxbackup.backup.errors import ConfigError
from cxbackup.backup.nativefetch import BINARY, BINARY_ENV, NativeFetcher, check_protocol, find_fetcher
from cxbackup.backup.s3source import S3MediaSource, S3Options, make_s3_client
from cxbackup.backup.s3target import S3BucketTarget
from cxbackup.backup.targets import BackupTarget, LocalDirectoryTarget
from cxbackup.backup.vendor_client import Urllib3Transport, VendorClient, VendorSettings
from cxbackup.core import endpoints
from cxbackup.core.retry import RetryPolicy

__all__ = [
    "check_vendor_host",
    "make_fetcher",
    "make_media_source",
    "make_vendor_client",
    "open_target",
    "source_s3_options",
    "target_s3_options",
]

log = logging.getLogger(__name__)


def check_vendor_host(url: str, credentials: Credentials, setting: str) -> None:
    """Refuse (ConfigError: a configuration error, never retried) the vendor endpoint `url`, named `setting`,
    when the operator gave this pod the installer's vendor hosts (CXBACKUP_VENDOR_HOSTS) and its host is not one
    of them. A run by hand, without the variable, has no allowlist."""
    try:
        endpoints.check_vendor_host(url, endpoints.vendor_allowlist(credentials.vendor_hosts), setting)
    except (endpoints.HostNotAllowedError, endpoints.EndpointError) as exc:
        detail = str(exc) if isinstance(exc, endpoints.HostNotAllowedError) else f"{setting} {exc}"
        raise ConfigError(detail) from None


def make_vendor_client(config: RcbsConfig, credentials: Credentials) -> VendorClient:
    check_vendor_host(config.gws_uri_prefix, credentials, "gwsUriPrefix")
    username, password = credentials.require_gws()
    return VendorClient(
        settings_url=config.settings_url,
        recordings_url=config.recordings_url,
        username=username,
        password=password,
        transport=Urllib3Transport(config.gws_proxy_url, pool_size=4),
        retry=RetryPolicy(retries=config.retries),
        page_size=config.page_size,
    )


def source_s3_options(config: RcbsConfig, credentials: Credentials) -> S3Options:
    """The vendor S3: AWS_* credentials, AWS_ENDPOINT_URL (wins) or awsEndpointUrl, awsRegion, proxy."""
    credentials.require_aws()
    endpoint_url = credentials.aws_endpoint_url or config.aws_endpoint_url
    if endpoint_url:
        check_vendor_host(
            endpoint_url, credentials, "AWS_ENDPOINT_URL" if credentials.aws_endpoint_url else "awsEndpointUrl"
        )
    return S3Options(
        access_key_id=credentials.aws_access_key_id,
        secret_access_key=credentials.aws_secret_access_key,
        session_token=credentials.aws_session_token,
        endpoint_url=endpoint_url,
        region=config.aws_region,
        proxy_url=config.aws_proxy_url,
        payload_signing=config.use_payload_signing,
        max_pool_connections=max(10, config.concurrency + 2),
        max_attempts=3,
    )


def make_fetcher(config: RcbsConfig, credentials: Credentials, target: BackupTarget) -> NativeFetcher | None:
    """The native media transfer (nativefetch.py) when mediaTransfer is native, or auto and it can be used:
    a folder target, the program installed, static S3 keys; else None (the Python path)."""
    requested = config.media_transfer
    if config.metadata_only or requested not in ("auto", "native"):
        return None
    if not isinstance(target, LocalDirectoryTarget):
        if requested == "native":
            raise ConfigError(
                "mediaTransfer=native writes into a folder (targetDir); with targetS3Bucket use auto or boto3"
            )
        return None
    options = source_s3_options(config, credentials)
    binary = find_fetcher()
    reasons = []
    if binary is None:
        reasons.append(
            f"the program {BINARY} is not installed (the image has it; in a checkout `make venv` builds it into "
            f"the venv; or name it in {BINARY_ENV})"
        )
    if not (options.access_key_id and options.secret_access_key):
        reasons.append("it needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if reasons:
        if requested == "native":
            raise ConfigError(f"mediaTransfer=native cannot be used: {'; '.join(reasons)}; use auto, crt or boto3")
        log.info("Media transfer: not native (%s)", "; ".join(reasons))
        return None
    assert binary is not None
    check_protocol(binary)
    log.info("Media transfer: native (%s)", binary)
    return NativeFetcher(binary, options, in_flight=config.concurrency, retry=RetryPolicy(retries=config.retries))


def make_media_source(
    config: RcbsConfig, credentials: Credentials, settings: VendorSettings, *, native: bool = False
) -> S3MediaSource:
    """The vendor's S3 as a media source; with mediaTransfer crt (or auto, when possible) one that
    downloads through the CRT S3 client (crtsource.py). `native`: the media go through the native program
    (make_fetcher); the source only locates them."""
    options = source_s3_options(config, credentials)
    if native:
        return S3MediaSource(settings, options)
    requested = config.media_transfer
    if config.target_s3_bucket and requested in ("auto", "native"):
        requested = "boto3"  # objects are streamed into the target bucket: no local file to write
    if requested == "native":
        requested = "auto"
    if select_media_transfer(requested, options) == "crt":
        return CrtS3MediaSource(settings, options, downloads=config.concurrency)
    return S3MediaSource(settings, options)


def target_s3_options(config: RcbsConfig, credentials: Credentials) -> S3Options:
    """The target S3: TARGET_AWS_* credentials (else boto3's default chain), targetS3EndpointUrl/Region."""
    return S3Options(
        access_key_id=credentials.target_access_key_id,
        secret_access_key=credentials.target_secret_access_key,
        session_token=credentials.target_session_token,
        endpoint_url=config.target_s3_endpoint_url,
        region=config.target_s3_region,
        proxy_url=config.aws_proxy_url,
        payload_signing=config.use_payload_signing,
        max_pool_connections=max(10, config.concurrency + 2),
        max_attempts=4,
        isolate_from_env=True,
    )


def open_target(config: RcbsConfig, credentials: Credentials, *, create: bool = True) -> BackupTarget:
    """The configured target: targetDir or targetS3Bucket (+ targetS3Prefix)."""
    if config.target_s3_bucket:
        client = make_s3_client(target_s3_options(config, credentials))
        target = S3BucketTarget(
            client, config.target_s3_bucket, config.target_s3_prefix, object_lock=config.target_s3_object_lock
        )
        target.check_object_lock()
        return target
    if config.target_dir:
        return LocalDirectoryTarget(config.target_dir, create=create)
    raise ConfigError("targetDir is required (or targetS3Bucket for an S3 target)")

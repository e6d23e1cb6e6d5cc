"""The emulator over real HTTP: the recording API contract (docs/vendor-api.md) and real S3 objects."""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from cxbackup.certs import cms
from cxbackup_dev.emulator import HOUR_MS, DatasetSpec, Emulator, parse_time

pytestmark = pytest.mark.integration


def get(emu: Emulator, path: str, *, auth: tuple[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    """GET {gwsUriPrefix}{path} with Basic auth (the emulator's own unless `auth`); (status, headers, JSON)."""
    url = urlsplit(emu.gws_uri_prefix + path)
    user, password = auth or (emu.gws_username, emu.gws_password)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    conn = http.client.HTTPConnection(url.netloc, timeout=30)
    try:
        conn.request(
            "GET", url.path + ("?" + url.query if url.query else ""), headers={"Authorization": f"Basic {token}"}
        )
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, dict(resp.getheaders()), json.loads(body) if body else None
    finally:
        conn.close()


def page(emu: Emulator, lo: int, hi: int, **params: int) -> dict[str, Any]:
    query = "".join(f"&{k}={v}" for k, v in params.items())
    status, _, body = get(emu, f"/recordings?startTimeRange={lo},{hi}{query}")
    assert status == 200, body
    assert isinstance(body, dict)
    return body


@pytest.fixture(scope="module")
def s3(emulator: Emulator) -> Iterator[Any]:
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=emulator.s3_endpoint,
        aws_access_key_id=emulator.aws_access_key_id,
        aws_secret_access_key=emulator.aws_secret_access_key,
        region_name="us-west-1",
        config=Config(retries={"max_attempts": 1}),
    )
    yield client
    client.close()


def test_paging_limit_offset_total_and_order(emulator: Emulator) -> None:
    truth = [r["id"] for r in emulator.records()]
    assert len(truth) == 30
    first = page(emulator, emulator.start_ms, emulator.end_ms, limit=7)
    assert (first["total"], first["offset"], len(first["recordings"])) == (30, 0, 7)
    ids: list[str] = []
    offset = 0
    while offset < 30:
        body = page(emulator, emulator.start_ms, emulator.end_ms, limit=7, offset=offset)
        assert body["offset"] == offset and body["total"] == 30
        ids += [r["id"] for r in body["recordings"]]
        offset += 7
    assert ids == truth
    keys = [(parse_time(r["startTime"]), r["id"]) for r in emulator.records()]
    assert keys == sorted(keys)
    beyond = page(emulator, emulator.start_ms, emulator.end_ms, offset=30)
    assert (beyond["total"], beyond["recordings"]) == (30, [])


def test_default_and_maximum_limit(make_emulator: Any) -> None:
    emu = make_emulator(DatasetSpec(hours=2, recordings_per_hour=700, screen_fraction=0.0), media="none")
    assert len(page(emu, emu.start_ms, emu.end_ms)["recordings"]) == 100
    capped = page(emu, emu.start_ms, emu.end_ms, limit=5000)
    assert capped["total"] == 1400 and len(capped["recordings"]) == 1000
    assert not emu.object_exists(capped["recordings"][0]["mediaFiles"][0]["mediaId"])  # metadata only


def test_range_edges_from_inclusive_to_exclusive(emulator: Emulator) -> None:
    records = list(emulator.records())
    t = parse_time(records[10]["startTime"])
    at_t = [r["id"] for r in records if parse_time(r["startTime"]) == t]
    assert [r["id"] for r in page(emulator, t, t + 1)["recordings"]] == at_t
    after = page(emulator, t + 1, emulator.end_ms)
    before = page(emulator, emulator.start_ms, t)
    assert before["total"] + len(at_t) + after["total"] == 30
    assert records[10]["id"] not in {r["id"] for r in before["recordings"] + after["recordings"]}


def test_the_record_is_the_ground_truth(emulator: Emulator) -> None:
    body = page(emulator, emulator.start_ms, emulator.end_ms, limit=100)
    assert body["recordings"] == list(emulator.records())


def test_seed_download_alias_path(emulator: Emulator) -> None:
    lo, hi = emulator.start_ms, emulator.start_ms + 2 * HOUR_MS
    plain = get(emulator, f"/recordings?startTimeRange={lo},{hi}&limit=100")
    alias = get(emulator, f"/recordings/download/?startTimeRange={lo},{hi}&limit=100")
    assert plain[0] == alias[0] == 200 and plain[2] == alias[2]


def test_settings(emulator: Emulator) -> None:
    status, headers, body = get(emulator, "/me/settings/rcbs")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert body == {
        "tenant": "PoD_tenant_2034",
        "storage": [
            {
                "region": "usw1",
                "awsRegion": "us-west-1",
                "bucket": "stage-recordings-us-west-1",
                "prefix": "PoD_tenant_2034/",
            },
            {
                "region": "use1",
                "awsRegion": "us-east-1",
                "bucket": "stage-recordings-us-east-1",
                "prefix": "PoD_tenant_2034/",
            },
        ],
    }


@pytest.mark.parametrize("path", ["/me/settings/rcbs", "/recordings?startTimeRange=0,1"])
def test_wrong_or_missing_credentials_get_401(emulator: Emulator, path: str) -> None:
    status, headers, _ = get(emulator, path, auth=(emulator.gws_username, "wrong"))
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    assert get(emulator, path, auth=("someone@else", emulator.gws_password))[0] == 401
    url = urlsplit(emulator.gws_uri_prefix + path)
    conn = http.client.HTTPConnection(url.netloc, timeout=10)
    conn.request("GET", url.path + "?" + url.query)
    assert conn.getresponse().status == 401
    conn.close()


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("", 400),
        ("?startTimeRange=abc", 400),
        ("?startTimeRange=1,2&limit=-1", 400),
        ("?startTimeRange=1,2&offset=x", 400),
    ],
)
def test_bad_requests(emulator: Emulator, query: str, status: int) -> None:
    assert get(emulator, f"/recordings{query}")[0] == status


def test_unknown_path_is_404(emulator: Emulator) -> None:
    assert get(emulator, "/nothing/here")[0] == 404


def test_every_media_object_decrypts_to_the_ground_truth(emulator: Emulator, s3: Any) -> None:
    key = cms.load_private_key(emulator.tenant_key_path)
    cert = cms.load_certificate(emulator.tenant_cert_path)
    count = 0
    kinds = set()
    for rec in emulator.records():
        entry = next((e for e in emulator.storage if e.region == rec["region"]), emulator.storage[0])
        for media in rec["mediaFiles"]:
            obj = s3.get_object(Bucket=entry.bucket, Key=f"{entry.prefix}{media['mediaId']}")
            data = obj["Body"].read()
            assert obj["ContentLength"] == len(data)
            plain = cms.decrypt(data, key, cert)
            assert plain == emulator.media_plaintext(media["mediaId"])
            assert len(plain) == int(media["size"])
            kinds.add(media["type"])
            count += 1
    assert count > 30 and kinds == {"audio/mp3", "video/mp4"}
    listed = s3.list_objects_v2(Bucket="stage-recordings-us-west-1", Prefix="PoD_tenant_2034/")
    assert listed["KeyCount"] > 0


@pytest.mark.parametrize(
    ("key_id", "secret", "code"),
    [("AKIAWRONGWRONGWRONG0", None, "InvalidAccessKeyId"), (None, "not-the-secret", "SignatureDoesNotMatch")],
)
def test_wrong_aws_credentials_are_refused(
    emulator: Emulator, key_id: str | None, secret: str | None, code: str
) -> None:
    client: Any = boto3.session.Session().client(
        "s3",
        endpoint_url=emulator.s3_endpoint,
        aws_access_key_id=key_id or emulator.aws_access_key_id,
        aws_secret_access_key=secret or emulator.aws_secret_access_key,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
    )
    try:
        with pytest.raises(ClientError) as head:
            client.head_bucket(Bucket="stage-recordings-us-east-1")
        assert head.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert head.value.response["Error"]["Code"] == "403"  # HEAD has no body
        with pytest.raises(ClientError) as info:
            client.list_objects_v2(Bucket="stage-recordings-us-east-1")
        assert info.value.response["Error"]["Code"] == code
        bucket, key = emulator.media_location(next(emulator.records())["mediaFiles"][0]["mediaId"])
        with pytest.raises(ClientError) as got:
            client.get_object(Bucket=bucket, Key=key)
        assert got.value.response["Error"]["Code"] == code
    finally:
        client.close()


def test_env_and_config(emulator: Emulator, tmp_path: Path) -> None:
    env = emulator.env()
    assert set(env) == {
        "GWS_USERNAME",
        "GWS_PASSWORD",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL",
    }
    assert env["AWS_ENDPOINT_URL"] == emulator.s3_endpoint
    path = emulator.write_config(tmp_path / "config.properties", target_dir=tmp_path / "target", rcbsInstanceId=0)
    props = dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))
    assert props["gwsUriPrefix"] == emulator.gws_uri_prefix
    assert props["awsEndpointUrl"] == emulator.s3_endpoint
    assert props["targetDir"] == (tmp_path / "target").as_posix()
    assert (props["maxDate"], props["minDate"]) == (str(emulator.start_ms), str(emulator.end_ms))
    assert props["rcbsInstanceId"] == "0"
    relative = emulator.write_config(tmp_path / "c2.properties", maxAge="P2D", minAge=0)
    assert "minDate" not in relative.read_text() and "maxAge=P2D" in relative.read_text()


def test_new_recordings_arrive_deleted_objects_and_rotation(make_emulator: Any) -> None:
    emu = make_emulator(DatasetSpec(hours=2, recordings_per_hour=3, screen_fraction=0.0))
    old_end = emu.end_ms
    first_key = emu.tenant_keys[0]
    rotated = emu.rotate_certificate()
    lo, hi = emu.extend(1)
    assert lo == old_end and page(emu, lo, hi)["total"] == 3
    assert page(emu, emu.start_ms, emu.end_ms)["total"] == 9
    new = list(emu.records(lo, hi))
    old = list(emu.records(emu.start_ms, old_end))
    assert new[0]["mediaFiles"][0]["certAlias"] == [rotated.alias] != old[0]["mediaFiles"][0]["certAlias"]
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=emu.s3_endpoint,
        aws_access_key_id=emu.aws_access_key_id,
        aws_secret_access_key=emu.aws_secret_access_key,
        region_name="us-west-1",
    )
    try:
        for rec, pair in ((new[0], rotated), (old[0], first_key)):
            media_id = rec["mediaFiles"][0]["mediaId"]
            bucket, key = emu.media_location(media_id)
            data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            recipient = cms.recipients(data)[0]
            assert recipient.matches(pair.certificate)
            assert cms.decrypt(data, pair.key, pair.certificate) == emu.media_plaintext(media_id)
        gone = old[1]["mediaFiles"][0]["mediaId"]
        emu.delete_object(gone)
        assert not emu.object_exists(gone)
        with pytest.raises(ClientError) as info:
            client.get_object(Bucket=emu.media_location(gone)[0], Key=emu.media_location(gone)[1])
        assert info.value.response["Error"]["Code"] == "NoSuchKey"
        extra = emu.add_recording(emu.start_ms + 60_000, screen=True, fields={"region": "use1"})
        bucket, key = emu.media_location(extra["mediaFiles"][1]["mediaId"])
        assert bucket == "stage-recordings-us-east-1"
        assert client.head_object(Bucket=bucket, Key=key)["ContentLength"] > int(extra["mediaFiles"][1]["size"])
    finally:
        client.close()


def test_lazy_media_created_on_first_read(make_emulator: Any) -> None:
    emu = make_emulator(DatasetSpec(hours=1, recordings_per_hour=4, screen_fraction=0.5), media="lazy")
    rec = next(emu.records())
    media_id = rec["mediaFiles"][0]["mediaId"]
    assert not emu.object_exists(media_id)
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=emu.s3_endpoint,
        aws_access_key_id=emu.aws_access_key_id,
        aws_secret_access_key=emu.aws_secret_access_key,
        region_name="us-west-1",
    )
    try:
        bucket, key = emu.media_location(media_id)
        data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        key_obj = cms.load_private_key(emu.tenant_key_path)
        assert cms.decrypt_with_key(data, key_obj) == emu.media_plaintext(media_id)
        assert emu.object_exists(media_id)
        with pytest.raises(ClientError):
            client.get_object(Bucket=bucket, Key=key + "-no-such-media")
    finally:
        client.close()

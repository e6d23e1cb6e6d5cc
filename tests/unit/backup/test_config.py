"""RcbsConfig: every property, warnings for unknown keys, errors naming the property, round trip."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxbackup.backup.config import PROPERTY_NAMES, Credentials, RcbsConfig, load_properties, parse_properties
from cxbackup.backup.errors import ConfigError, PropertiesSyntaxError

FULL = """\
# every RCBS property and ours
gwsUriPrefix=https://example.com/api/v2
gwsRecordingsUri=/recordings/download
gwsSettingsUri=/me/settings/rcbs
targetDir=//server_name/path
minAge=PT30M
maxAge=P1Y2DT4H30M
mediaTypePattern=audio/mp3
recordingFolderFormat=yyyy/MM/dd
encryptionFormat=aes-256
metadataOnly=true
usePayloadSigning=true
awsProxyHost=10.0.1.31
awsProxyPort=8080
gwsProxyHost=http://10.0.1.32
gwsProxyPort=3128
totalRcbsInstances=4
rcbsInstanceId=3
skipLastRecordingCheck=false
awsEndpointUrl=http://127.0.0.1:9000
awsRegion=us-west-1
concurrency=8
retries=3
pageSize=500
partitions=/sales, /support
accessGroups=/Anthony
agentHierarchy=/Anthony/John
summaryFile=/dev/termination-log
"""


def test_every_property_is_read() -> None:
    config, warnings = load_properties(FULL, "config.properties")
    assert warnings == []
    assert config.gws_uri_prefix == "https://example.com/api/v2"
    assert config.recordings_url == "https://example.com/api/v2/recordings/download"
    assert config.settings_url == "https://example.com/api/v2/me/settings/rcbs"
    assert config.target_dir == "//server_name/path"
    assert (config.min_age, config.max_age) == ("PT30M", "P1Y2DT4H30M")
    assert config.media_type_pattern == "audio/mp3"
    assert config.recording_folder_format == "yyyy/MM/dd"
    assert config.encryption_format == "AES-256"
    assert config.metadata_only is True and config.use_payload_signing is True
    assert config.aws_proxy_url == "http://10.0.1.31:8080"
    assert config.gws_proxy_url == "http://10.0.1.32:3128"
    assert (config.total_rcbs_instances, config.rcbs_instance_id) == (4, 3)
    assert config.shard.label == "3-of-4"
    assert config.aws_endpoint_url == "http://127.0.0.1:9000"
    assert (config.aws_region, config.concurrency, config.retries, config.page_size) == ("us-west-1", 8, 3, 500)
    assert config.partitions == ("/sales", "/support")
    assert config.access_groups == ("/Anthony",)
    assert config.agent_hierarchy == ("/Anthony/John",)
    assert config.summary_file == "/dev/termination-log"


def test_defaults_follow_the_seed() -> None:
    config = parse_properties("gwsUriPrefix=https://x/api\ntargetDir=/t\n", "c")
    assert (config.min_age, config.max_age) == ("0", "2")
    assert config.gws_recordings_uri == "/recordings"
    assert config.gws_settings_uri == "/me/settings/rcbs"
    assert config.recording_folder_format == "yyyy/MM/dd/HH"
    assert config.media_selector.matches("audio/mp3") and config.media_selector.matches("video/mp4")
    assert not config.media_selector.matches("audio/wav")
    assert config.encryption_format == "AES-128"
    assert (config.metadata_only, config.use_payload_signing) == (False, False)
    assert (config.total_rcbs_instances, config.rcbs_instance_id, config.concurrency) == (1, 0, 64)


def test_unknown_keys_warn_with_suggestion() -> None:
    _, warnings = load_properties("gwsUriPrefix=https://x\nmaxage=3\ntargetDri=/t\nfrobnicate=1\n", "c.p")
    assert "c.p:2: unknown property 'maxage' ignored (did you mean 'maxAge'?" in warnings[0]
    assert "c.p:3: unknown property 'targetDri' ignored (did you mean 'targetDir'?)" in warnings[1]
    assert warnings[2] == "c.p:4: unknown property 'frobnicate' ignored"


def test_known_rcbs_settings_we_do_not_implement_say_so() -> None:
    _, warnings = load_properties("gwsUriPrefix=https://x\nMetadataPropertiesExclude=test\n", "c.p")
    assert "does not implement" in warnings[0] and "MetadataPropertiesExclude" in warnings[0]


def test_seed_default_media_pattern_with_backslashes_is_understood() -> None:
    config, warnings = load_properties("gwsUriPrefix=https://x\nmediaTypePattern=audio\\mp3 video\\mp4\n", "c")
    assert config.media_type_pattern == "audio/mp3 video/mp4"
    assert any("read as 'audio/mp3 video/mp4'" in w for w in warnings)


def test_empty_value_means_default() -> None:
    config = parse_properties("gwsUriPrefix=https://x\nminDate=\nmaxAge=\n", "c")
    assert config.min_date is None and config.max_age == "2"


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        ("minAge=5\nmaxAge=2\n", ["minAge (5) must be less than maxAge (2)", "(line 2)"]),
        ("minAge=P40D\nmaxAge=P1M\n", ["minAge (P40D) must be less than maxAge (P1M)"]),
        ("maxAge=two\n", ["maxAge='two'", "(line 2)"]),
        ("minDate=2018-02-30\n", ["minDate='2018-02-30'", "not a calendar date"]),
        ("maxDate=1519047014\n", ["maxDate", "epoch seconds"]),
        ("rcbsInstanceId=4\ntotalRcbsInstances=4\n", ["rcbsInstanceId=4 must be in 0..3"]),
        ("encryptionFormat=DES\n", ["encryptionFormat"]),
        ("concurrency=0\n", ["concurrency", "(line 2)"]),
        ("awsProxyHost=10.0.0.1\n", ["awsProxyHost is set but awsProxyPort is not"]),
        ("targetDir=C:\\target\n", ["targetDir", "control character"]),
        ("targetDir=C:\\\\target\n", ["targetDir", "use '/'"]),
        ("mediaTypePattern=audio/(mp3\n", ["mediaTypePattern", "not a regular expression"]),
        ("recordingFolderFormat=yyyy/MMM\n", ["recordingFolderFormat", "'MMM' is not supported"]),
        ("recordingFolderFormat=yyyy/../dd\n", ["recordingFolderFormat", "plain name"]),
        ("windowStart=5\n", ["windowStart and windowEnd"]),
        ("targetS3Bucket=b\ntargetDir=/t\n", ["targetDir or targetS3Bucket"]),
        ("usePayloadSigning=maybe\n", ["usePayloadSigning"]),
    ],
)
def test_invalid_values_name_the_property(body: str, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_properties("gwsUriPrefix=https://example.com/api/v2\n" + body, "config.properties")
    message = str(info.value)
    assert message.startswith("config.properties: "), message
    for fragment in fragments:
        assert fragment in message, message


def test_missing_required_and_bad_url() -> None:
    with pytest.raises(ConfigError, match="gwsUriPrefix: is required"):
        load_properties("targetDir=/t\n", "c")
    with pytest.raises(ConfigError, match="gwsUriPrefix: 'ftp://x' is not an http"):
        load_properties("gwsUriPrefix=ftp://x\n", "c")


def test_malformed_line_is_a_syntax_error() -> None:
    with pytest.raises(PropertiesSyntaxError, match=r"^c:2: 'targetDir' has no value"):
        load_properties("gwsUriPrefix=https://x\ntargetDir\n", "c")


def test_construction_from_python_values_and_property_names() -> None:
    by_field = RcbsConfig(gws_uri_prefix="https://x/api", target_dir="/b", min_age=1, max_age="P30D", partitions=["a"])
    by_alias = RcbsConfig.from_values(
        {"gwsUriPrefix": "https://x/api", "targetDir": "/b", "minAge": "1", "maxAge": "P30D", "partitions": "a"}
    )
    assert by_field == by_alias
    with pytest.raises(ConfigError, match="concurrency"):
        RcbsConfig.from_values({"gwsUriPrefix": "https://x", "concurrency": 1000})
    with pytest.raises(ConfigError, match="frobnicate: is not a known property"):
        RcbsConfig.from_values({"gwsUriPrefix": "https://x", "frobnicate": 1})


def test_to_properties_round_trip_of_a_full_config() -> None:
    config, _ = load_properties(FULL, "c")
    text = config.to_properties()
    assert parse_properties(text, "rendered") == config
    assert all(line.startswith("#") or line.split("=")[0] in PROPERTY_NAMES for line in text.splitlines())


@settings(max_examples=60, deadline=None)
@given(
    target=st.text(
        st.characters(min_codepoint=32, exclude_characters="\\", exclude_categories=("Cs",)), min_size=1, max_size=30
    ).filter(lambda s: s.strip() == s and s),
    parts=st.lists(
        st.text(
            st.characters(min_codepoint=33, exclude_characters=",", exclude_categories=("Cs",)), min_size=1, max_size=8
        ),
        max_size=3,
    ),
    age=st.integers(0, 10),
    window=st.one_of(st.none(), st.tuples(st.integers(0, 2**41), st.integers(0, 2**20))),
    metadata_only=st.booleans(),
)
def test_to_properties_round_trip_property(
    target: str, parts: list[str], age: int, window: tuple[int, int] | None, metadata_only: bool
) -> None:
    values: dict[str, object] = {
        "gwsUriPrefix": "https://gws.example.com/api/v2",
        "targetDir": target,
        "partitions": parts,
        "minAge": age,
        "maxAge": age + 1,
        "metadataOnly": metadata_only,
    }
    if window is not None:
        values["windowStart"], values["windowEnd"] = window[0], window[0] + window[1]
    config = RcbsConfig.from_values(values)
    assert parse_properties(config.to_properties(), "rendered") == config


def test_credentials_from_env_never_show_secrets() -> None:
    creds = Credentials.from_env(
        {
            "GWS_USERNAME": "u@t.com",
            "GWS_PASSWORD": "pa55word!",
            "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
        }
    )
    assert creds.require_gws() == ("u@t.com", "pa55word!")
    creds.require_aws()
    assert "pa55word" not in repr(creds) and "wJalr" not in repr(creds)
    assert creds.aws_endpoint_url == "http://127.0.0.1:1"
    # what a Redactor is given: every secret and the Basic token the recording API is sent
    token = base64.b64encode(b"u@t.com:pa55word!").decode()
    assert set(creds.secrets()) == {"pa55word!", "wJalrXUtnFEMI/K7MDENG", token}
    with pytest.raises(ConfigError, match="GWS_PASSWORD"):
        Credentials.from_env({"GWS_USERNAME": "u"}).require_gws()
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        Credentials.from_env({}).require_aws()

"""Configuration and request validation: clear messages that name the bad value."""

import pytest
from media_service.config import ConfigError, MediaConfig, StreamRequest
from media_service.config import parse_args as media_args
from media_service.states import Mode
from pydantic import ValidationError
from sts_service.config import ConfigError as StsConfigError
from sts_service.config import parse_args as sts_args


def test_sts_refuses_to_start_without_token_unless_no_auth(monkeypatch):
    monkeypatch.delenv("STS_AUTH_TOKEN", raising=False)
    with pytest.raises(StsConfigError, match="STS_AUTH_TOKEN"):
        sts_args([])
    assert sts_args(["--no-auth"]).no_auth
    with pytest.raises(StsConfigError, match="--max-speed"):
        sts_args(["--no-auth", "--max-speed", "9"])
    with pytest.raises(StsConfigError, match="needs --tts-model"):
        sts_args(["--no-auth", "--tts-engine", "piper"])


def test_media_config_is_checked_at_start(monkeypatch):
    monkeypatch.setenv("STS_AUTH_TOKEN", "t")
    cfg = media_args([])
    assert cfg.output_delay_s == 2.5 and cfg.max_fragment_ms == 5000.0 and cfg.default_mix == "duck"
    assert media_args(["--output-delay", "3.5"]).output_delay_s == 3.5  # fragments shrink to fit
    with pytest.raises(ConfigError, match="output_delay_s: 1.5 s is too short"):
        media_args(["--output-delay", "1.5"])
    with pytest.raises(ConfigError, match="STS_URL"):
        media_args(["--sts-url", "localhost:8000"])
    monkeypatch.delenv("STS_AUTH_TOKEN")
    with pytest.raises(ConfigError, match="STS_AUTH_TOKEN"):
        media_args([])


def test_stream_request_names_bad_fields_and_derives_outputs():
    with pytest.raises(ValidationError, match="input_url"):
        StreamRequest.model_validate({"input_url": "http://x/y", "output_url": "rtmp://h/live/o"})
    with pytest.raises(ValidationError, match="extra"):
        StreamRequest.model_validate({"input_url": "rtmp://h/live/a/in", "output_url": "rtmp://h/o", "x": 1})
    req = StreamRequest(input_url="rtmp://h:1935/live/_definst_/show/in", output_url="rtmp://h/live/show/{lang}",
                        target_languages=["es", "ca"])
    assert req.stream_id() == "show"
    assert req.output_for("ca") == "rtmp://h/live/show/ca"


def test_publish_hooks_map_input_paths_to_urls():
    # Snapshots show these URLs redacted (rtmp://h/live/***): the mapping is checked here.
    from media_service.control.hooks import PublishHooks

    hooks = PublishHooks(MediaConfig(sts_token="t", rtmp_base_url="rtmp://h:1935"), None, None)
    req = hooks.request_for("live/show/in", "lang=es,ca", nginx=True)
    assert (req.id, req.input_url, req.output_url) == (
        "show", "rtmp://h:1935/live/_definst_/show/in", "rtmp://h:1935/live/_definst_/show/{lang}")
    req = hooks.request_for("live/a/b/in", "")
    assert (req.id, req.input_url, req.output_url) == ("a-b", "rtmp://h:1935/live/a/b/in", "rtmp://h:1935/live/a/b/out")
    assert hooks.request_for("live/show/out", "") is None


@pytest.mark.parametrize("argv, environ, message", [
    (["--output-delay", "0.5"], {}, r"^--output-delay \(MEDIA_OUTPUT_DELAY\) must be within 1\.\.60, got 0\.5$"),
    ([], {"MEDIA_MAX_STREAMS": "0"}, r"^--max-streams \(MEDIA_MAX_STREAMS\) must be within 1\.\.1000, got 0$"),
    (["--port", "abc"], {}, r"^--port \(MEDIA_PORT\): invalid int value: 'abc'$"),
    ([], {"MEDIA_PORT": "abc"}, r"^--port \(MEDIA_PORT\): invalid int value 'abc'$"),
    ([], {"MEDIA_MIX": "loud"}, r"^--mix \(MEDIA_MIX\): input should be 'duck', 'replace' or 'passthrough'"),
    ([], {"MEDIA_TARGET_LANGUAGES": "es,x y"}, r"^--target-languages \(MEDIA_TARGET_LANGUAGES\): string should"),
])
def test_bad_values_are_one_line_naming_flag_and_variable(argv, environ, message):
    with pytest.raises(ConfigError, match=message):
        media_args(argv, {"STS_AUTH_TOKEN": "t", **environ})


def test_secrets_never_appear_in_messages():
    with pytest.raises(ConfigError) as err:
        media_args([], {"STS_AUTH_TOKEN": "t", "MEDIA_API_TOKEN": "change-me-secret-value"})
    assert "change-me-secret-value" not in str(err.value) and "MEDIA_API_TOKEN is not usable" in str(err.value)


def test_config_is_typed_and_request_defaults_are_the_declared_ones():
    cfg = media_args(["--mix", "replace", "--allowed-hosts", "A.example, b"], {"STS_AUTH_TOKEN": "t"})
    assert cfg.default_mix is Mode.REPLACE and cfg.allowed_hosts == ("a.example", "b")
    req = StreamRequest(input_url="rtmp://h/live/a/in", output_url="rtmp://h/live/a/out")
    assert (req.source_language, req.target_languages, req.mix) == ("en", ["es"], Mode.DUCK)
    assert req.output_delay_s is None and req.duck_gain_db is None  # the stream takes the service's
    with pytest.raises(ConfigError, match="extra"):
        MediaConfig(sts_token="t", output_delay=3)  # a misspelt keyword is refused, as with a dataclass

"""Configuration and request validation: clear messages that name the bad value."""

import pytest
from media_service.config import ConfigError, StreamRequest
from media_service.config import parse_args as media_args
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
    assert cfg.output_delay_s == 8.0 and cfg.max_fragment_ms == 5000.0 and cfg.default_mix == "duck"
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

"""Shared secrets: placeholders and short tokens are refused at start (issue 12 #7)."""

import pytest
from livedub_protocol import weak_token_reason
from media_service.config import ConfigError as MediaConfigError
from media_service.config import MediaConfig
from sts_service.config import ConfigError as StsConfigError
from sts_service.config import StsConfig


@pytest.mark.parametrize("token", ["change-me-sts-token", "change-me-media-api-token", "short",
                                   "aaaaaaaaaaaaaaaaaaaa", "CHANGEME0123456789"])
def test_weak_tokens_are_named(token):
    assert weak_token_reason(token)


def test_generated_tokens_pass():
    import secrets

    for _ in range(20):
        assert weak_token_reason(secrets.token_hex(24)) is None
        assert weak_token_reason(secrets.token_urlsafe(24)) is None


def test_sts_refuses_the_example_token():
    with pytest.raises(StsConfigError, match="placeholder 'change-me'"):
        StsConfig(auth_token="change-me-sts-token")  # checked when made
    StsConfig(no_auth=True)  # local use without a token is still explicit and possible


def test_media_refuses_the_example_api_token():
    with pytest.raises(MediaConfigError, match="MEDIA_API_TOKEN is not usable"):
        MediaConfig(sts_token="x" * 20, api_token="change-me-media-api-token")

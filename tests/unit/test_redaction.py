"""Credentials in stream URLs never leave the process (issue 12 #8): snapshots, events, input errors,
and the dashboard does not keep the API token in localStorage."""

import pytest
from livedub_protocol import describe_validation_error
from media_service.config import MediaConfig, StreamRequest
from media_service.control.dashboard import DASHBOARD_HTML
from media_service.events import EventLog
from media_service.media_io.ingest import InputError, open_input
from media_service.metrics import MediaMetrics
from media_service.stream.worker import StreamWorker
from pydantic import ValidationError

SECRET_IN = "rtmp://publisher:hunter2hunter2@127.0.0.1:1/live/x/in?user=media&pass=topsecret42"
SECRET_OUT = "rtmp://media:anothersecret99@127.0.0.1:1/live/x/out"


def test_snapshot_and_events_show_no_credentials():
    events = EventLog()
    req = StreamRequest(input_url=SECRET_IN, output_url=SECRET_OUT)
    w = StreamWorker("x", req, MediaConfig(sts_token="t"), MediaMetrics(), events)
    snap = w.snapshot()
    text = repr(snap)
    for secret in ("hunter2hunter2", "topsecret42", "anothersecret99", "publisher:"):
        assert secret not in text
    assert snap["input_url"].startswith("rtmp://***@127.0.0.1:1/live/x/in?user=***&pass=***")
    w.events.publish("x", "started", {"input_url": snap["input_url"]})
    assert "topsecret42" not in repr(events.since(0))


def test_refused_urls_are_named_without_their_credentials():
    with pytest.raises(ValidationError) as exc:
        StreamRequest(input_url=SECRET_IN, output_url="gopher://u:anothersecret99@h/x?pass=topsecret42")
    message = describe_validation_error(exc.value)  # what a 400 from the API says
    assert "gopher://***@h/x?pass=***" in message
    assert "anothersecret99" not in message and "topsecret42" not in message


def test_input_errors_name_the_input_without_its_credentials():
    with pytest.raises(InputError) as exc:
        open_input(SECRET_IN, timeout_s=1.0)
    assert "127.0.0.1:1" in str(exc.value)
    assert "hunter2hunter2" not in str(exc.value) and "topsecret42" not in str(exc.value)


def test_dashboard_keeps_the_token_in_memory_only():
    assert "localStorage.setItem" not in DASHBOARD_HTML and "localStorage.getItem" not in DASHBOARD_HTML


def test_cloud_translation_requests_only_go_to_http_urls():
    """A misconfigured engine URL (file://, ftp://) is refused before anything is opened."""
    import pytest
    from sts_service.translation._http import post_json
    from sts_service.translation.base import TranslationError

    for url in ("file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1:70/"):
        with pytest.raises(TranslationError, match="only http"):
            post_json(url, {}, headers={}, timeout=1, engine="deepl", redact="k")

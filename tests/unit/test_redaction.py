"""Credentials in stream URLs never leave the process (issue 12 #8, issue 24 #2): snapshots, events,
input errors, preview and STS errors, and the dashboard does not keep the API token in localStorage."""

import pytest
from livedub_protocol import describe_validation_error
from media_service.config import MediaConfig, StreamRequest
from media_service.control.dashboard import DASHBOARD_HTML
from media_service.events import EventLog
from media_service.media_io.ingest import InputError, open_input
from media_service.metrics import MediaMetrics
from media_service.redaction import redact, redact_url, url_origin, viewer_view
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
    assert snap["input_url"] == "rtmp://***@127.0.0.1:1/live/***?user=***&pass=***"
    w.events.publish("x", "started", {"input_url": snap["input_url"]})
    assert "topsecret42" not in repr(events.since(0))


KEY = "abcd-efgh-ijkl-mnop-qrst"  # an RTMP stream key, as YouTube/Twitch give them (in the path)


def test_stream_keys_in_paths_and_fragments_are_redacted():
    assert redact_url(f"rtmp://a.rtmp.youtube.com/live2/{KEY}") == "rtmp://a.rtmp.youtube.com/live2/***"
    assert redact_url(f"rtmps://live.example/app/inst/{KEY}?x=1") == "rtmps://live.example/app/***?x=***"
    assert redact_url(f"srt://h:9000#?passphrase={KEY}") == "srt://h:9000#***"
    assert redact_url(f"http://sts.internal:8000/v1/{KEY}") == "http://sts.internal:8000/v1/***"
    assert redact_url("rtmp://h/live") == "rtmp://h/live" and redact_url("/srv/media/a.ts") == "/srv/media/a.ts"
    assert KEY not in redact(f"[rtmp @ 0x1] Cannot open rtmp://h:1935/live2/{KEY}: refused")


def test_snapshot_events_and_preview_name_show_no_stream_key(monkeypatch):
    from media_service.config import PlannedOutput, Track
    from media_service.control.preview import PreviewBroadcaster

    events = EventLog()
    req = StreamRequest(input_url=f"rtmp://127.0.0.1:1/live2/{KEY}", output_url=f"rtmp://127.0.0.1:1/out/{KEY}")
    cfg = MediaConfig(sts_token="t", sts_url=f"http://127.0.0.1:9/sts/{KEY}")
    w = StreamWorker("x", req, cfg, MediaMetrics(), events)
    assert KEY not in repr(w.snapshot()), w.snapshot()
    monkeypatch.setattr(type(w.dubbing.sts), "url", property(lambda self: cfg.sts_url))  # as if connected there
    assert w.snapshot()["sts"]["url"] == "http://127.0.0.1:9/sts/***"
    w.playout.make_writer = lambda out: object()  # the open itself is not what is checked here
    w.playout.plan = [PlannedOutput("es", "rtmp", req.output_url, (Track("es", "es"),))]
    w.playout._open_outputs()
    opened = [e for e in events.since(0) if e["type"] == "output_open"]
    assert opened and KEY not in repr(opened), opened
    assert KEY not in PreviewBroadcaster(req.output_url, name=f"x {req.output_url}").name


def test_the_viewer_sees_scheme_and_host_only():
    snap = {"id": "x", "input_url": f"rtmp://u:p@h:1935/live2/{KEY}?pass=p", "reason": f"cannot open srt://h:9/{KEY}",
            "outputs": {"es": f"rtmp://out.example/live/{KEY}", "file.1": "/srv/media/a.ts", "hls.2": "hls://"},
            "sts": {"url": f"http://sts:8000/{KEY}", "last_error": None}, "hls": {"master": "/v1/streams/x/hls/master.m3u8"}}
    view = viewer_view(snap)
    assert view == {"id": "x", "input_url": "rtmp://h:1935", "reason": "cannot open srt://h:9",
                    "outputs": {"es": "rtmp://out.example", "file.1": "file://", "hls.2": "hls://"},
                    "sts": {"url": "http://sts:8000", "last_error": None}, "hls": {"master": "/v1/streams/x/hls/master.m3u8"}}
    assert url_origin("srt://[::1]:9000?passphrase=x") == "srt://[::1]:9000"


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

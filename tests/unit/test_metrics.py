"""media-service metrics: a removed stream leaves no series behind (issue 12 #10)."""

from media_service.metrics import MediaMetrics
from prometheus_client import generate_latest


def test_forget_drops_every_series_of_the_stream():
    m = MediaMetrics()
    for stream in ("a", "b"):
        m.fragments_sent.labels(stream).inc()
        m.fragments_processed.labels(stream, "ok").inc()
        m.fallbacks.labels(stream, "timeout").inc()
        m.fallbacks.labels(stream, "late").inc()
        m.roundtrip.labels(stream).observe(0.5)
        m.output_delay.labels(stream).set(3.5)
        m.set_sts_state(stream, "connected")
        m.input_up.labels(stream).set(1)
    m.forget("a")
    text = generate_latest(m.registry).decode()
    assert 'stream="a"' not in text
    assert text.count('stream="b"') >= 10
    m.forget("never-seen")  # no error

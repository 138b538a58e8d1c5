"""The contract module: v1.1 additions are optional, v1.0 payloads still parse, PCM16 round-trips."""

import numpy as np
import pytest
from livedub_protocol import (
    PROTOCOL_MINOR,
    ErrorCode,
    FragmentData,
    FragmentProcessed,
    ProtocolError,
    StreamInitAck,
    dump,
    float_to_pcm16,
    parse,
    pcm16_duration_ms,
    pcm16_to_float,
)

V10_FRAGMENT = {"stream_id": "s1", "fragment_id": "f1", "sequence_number": 0, "start_ms": 0.0,
                "duration_ms": 100.0, "audio": b"\x00\x00" * 1600}


def test_v10_fragment_parses_without_deadline():
    assert parse(FragmentData, V10_FRAGMENT).deadline_ms is None


def test_deadline_is_checked():
    assert parse(FragmentData, {**V10_FRAGMENT, "deadline_ms": 2500}).deadline_ms == 2500
    for bad in (0, -1, 10**7, "soon"):
        with pytest.raises(ProtocolError) as exc:
            parse(FragmentData, {**V10_FRAGMENT, "deadline_ms": bad})
        assert exc.value.code == ErrorCode.INVALID_PAYLOAD and "deadline_ms" in exc.value.message


def test_init_ack_names_minor_version():
    ack = StreamInitAck(session_id="x", max_inflight=2,
                        capabilities={"asr": "a", "translation": "t", "tts": "s", "languages": ["es"]})
    assert ack.protocol_version == 1 and ack.protocol_minor == PROTOCOL_MINOR >= 1


def test_deadline_exceeded_result_parses():
    msg = parse(FragmentProcessed, {**{k: v for k, v in V10_FRAGMENT.items() if k != "audio"},
                                    "status": "failed",
                                    "error": {"code": "deadline_exceeded", "stage": "asr", "message": "late"}})
    assert msg.error.code == ErrorCode.DEADLINE_EXCEEDED.value


def test_pcm16_round_trip():
    x = np.array([0.0, 0.5, -0.5, 1.5, -1.5], np.float32)
    pcm = float_to_pcm16(x)
    assert pcm16_duration_ms(pcm, 1000) == 5.0
    np.testing.assert_allclose(pcm16_to_float(pcm), np.clip(x, -1, 1), atol=1e-4)


def test_the_media_service_says_its_audio_rate_at_init():
    """The fragments are the segmenter's audio: stream:init names its rate instead of relying on
    the protocol's default."""
    from media_service.audio.timeline import VAD_RATE
    from media_service.config import MediaConfig, StreamRequest
    from media_service.events import EventLog
    from media_service.metrics import MediaMetrics
    from media_service.stream.worker import StreamWorker

    req = StreamRequest(input_url="rtmp://127.0.0.1:1/live/x/in", output_url="rtmp://127.0.0.1:1/live/x/out")
    worker = StreamWorker("x", req, MediaConfig(sts_token="t"), MediaMetrics(), EventLog())
    init = worker.dubbing.sts.init
    assert "audio" in init.model_fields_set  # set from the segmenter's rate, not left to the default
    assert dump(init)["audio"] == {"encoding": "pcm_s16le", "sample_rate_hz": VAD_RATE, "channels": 1}

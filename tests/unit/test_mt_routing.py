"""Logic of per-pair MT, stream context and LLM answer checks (fakes; the engines themselves are
tested for real in tests/integration/test_mt_ctranslate2.py and test_openai_engines.py)."""

from __future__ import annotations

import pytest
from sts_service.config import ConfigError, StsConfig
from sts_service.context import MAX_CHARS, MAX_ENTRIES, StreamContext
from sts_service.translation import Context, TranslationError
from sts_service.translation.languages import script_share
from sts_service.translation.router import PairRouter, build_router, parse_mt_models
from sts_service.translation.validate import check_translation


class Fake:
    def __init__(self, name, pairs, takes_context=False, remote=False):
        self.name, self._pairs, self.calls = name, set(pairs), []
        self.takes_context, self.remote = takes_context, remote

    def pairs(self):
        return self._pairs

    def translate(self, text, source, target, **kwargs):
        self.calls.append((text, source, target, kwargs))
        return f"{self.name}:{text}"


# ------------------------------------------------------------------ --mt-model entries


def test_mt_model_entries_parse():
    specs = parse_mt_models(["en-es=ctranslate2:/models/opus mt", "en-ca=openai", "en-fr=openai:qwen:7b",
                             "en-de=deepl"])
    assert specs[("en", "es")].arg == "/models/opus mt" and specs[("en", "es")].engine == "ctranslate2"
    assert specs[("en", "ca")].arg == "" and specs[("en", "fr")].arg == "qwen:7b"
    assert specs[("en", "de")].engine == "deepl"


@pytest.mark.parametrize(("entry", "why"), [
    ("en-es", "is not SRC-TGT"), ("en_es=apertium", "is not SRC-TGT"), ("en-es=marian:/x", "unknown engine"),
    ("en-es=ctranslate2", "needs the model directory"), ("en-es=apertium:/x", "takes no argument"),
    ("en-en=apertium", "same language")])
def test_bad_mt_model_entries(entry, why):
    with pytest.raises(ValueError, match=why):
        parse_mt_models([entry])
    with pytest.raises(ValueError, match="given twice"):
        parse_mt_models(["en-es=deepl", "en-es=google"])


def test_config_checks_the_entries_and_the_servers(tmp_path):
    with pytest.raises(ConfigError, match=r"--mt-model \(STS_MT_MODELS\).*is not a directory"):
        StsConfig(no_auth=True, mt_models=("en-es=ctranslate2:/nonexistent/model",))
    assert StsConfig(no_auth=True, mt_models=(f"en-es=ctranslate2:{tmp_path}",)).mt_models
    with pytest.raises(ConfigError, match="needs --llm-url"):
        StsConfig(no_auth=True, translation_engine="openai", llm_model="m")
    with pytest.raises(ConfigError, match="needs --llm-model"):
        StsConfig(no_auth=True, mt_models=("en-es=openai",), llm_url="http://gpu:8000/v1")
    assert StsConfig(no_auth=True, mt_models=("en-es=openai:qwen",), llm_url="http://gpu:8000/v1")
    with pytest.raises(ConfigError, match="needs --asr-url"):
        StsConfig(no_auth=True, asr_engine="openai")
    with pytest.raises(ConfigError, match="needs --tts-url"):
        StsConfig(no_auth=True, tts_engine="openai")
    with pytest.raises(ConfigError, match="http"):
        StsConfig(no_auth=True, asr_engine="openai", asr_url="ftp://gpu/v1")


def test_api_keys_are_environment_only_and_never_in_messages():
    for name in ("asr_api_key", "llm_api_key", "tts_api_key"):
        opt = StsConfig.option(name)
        assert opt["flag"] is None and opt["secret"] and opt["env"].endswith("_API_KEY")


# ------------------------------------------------------------------ the router


def test_router_sends_each_pair_to_its_engine_and_hints_only_to_engines_that_take_them():
    default = Fake("apertium", {("en", "es"), ("en", "ca")})
    llm = Fake("openai:m", {("en", "es"), ("en", "fr")}, takes_context=True, remote=True)
    built = []

    def make(engine, arg, pairs):
        built.append((engine, arg, pairs))
        return llm

    router = build_router(default, parse_mt_models(["en-fr=openai:m", "en-es=openai:m"]), make)
    assert built == [("openai", "m", {("en", "fr"), ("en", "es")})]  # one engine for both pairs
    assert router.names("en") == {"ca": "apertium", "es": "openai:m", "fr": "openai:m"}
    assert router.name == "apertium+openai:m"
    ctx = Context((("We have a lot to talk", ""),))
    assert router.translate("about tonight.", "en", "es", context=ctx, timeout=0.5) == "openai:m:about tonight."
    assert llm.calls[-1][3] == {"context": ctx, "timeout": 0.5}
    router.translate("Hello.", "en", "ca", context=ctx, timeout=0.5)
    assert default.calls[-1][3] == {}  # apertium takes neither
    with pytest.raises(TranslationError, match="cannot translate en->de"):
        build_router(default, parse_mt_models(["en-de=openai:m"]), make)


def test_router_without_entries_is_the_default_engine():
    default = Fake("apertium", {("en", "es")})
    router = PairRouter(default)
    assert router.name == "apertium" and router.pairs() == {("en", "es")}


# ------------------------------------------------------------------ stream context


def test_context_holds_what_came_before_by_sequence_number():
    ctx = StreamContext()
    ctx.heard(0, "We have a lot to talk")
    ctx.heard(2, "and tomorrow.")  # fragment 2's ASR finished before fragment 1's
    ctx.heard(1, "about tonight,")
    ctx.translated(0, "es", "Tenemos mucho de qué hablar")
    assert ctx.before(0, "es") == Context()
    assert ctx.before(1, "es").previous == (("We have a lot to talk", "Tenemos mucho de qué hablar"),)
    assert ctx.before(2, "es").previous == (("We have a lot to talk", "Tenemos mucho de qué hablar"),
                                            ("about tonight,", ""))
    assert ctx.before(2, "ca").previous[0] == ("We have a lot to talk", "")  # per target
    assert ctx.before(2, "es").source_text() == "We have a lot to talk about tonight,"


def test_context_is_bounded():
    ctx = StreamContext()
    for seq in range(50):
        ctx.heard(seq, f"sentence {seq}")
    assert len(ctx) == MAX_ENTRIES
    assert [s for s, _ in ctx.before(50, "es").previous] == ["sentence 47", "sentence 48", "sentence 49"]
    ctx.heard(60, "x" * (MAX_CHARS - 5))
    ctx.heard(61, "y" * 10)
    assert [len(s) for s, _ in ctx.before(62, "es").previous] == [10]  # no more than MAX_CHARS


# ------------------------------------------------------------------ LLM answers


@pytest.mark.parametrize("answer", [
    "Buenas noches y bienvenidos al programa.", "  Buenas noches y bienvenidos al programa.\n",
    "<think>formal</think>Buenas noches y bienvenidos al programa."])
def test_good_answers_pass(answer):
    assert check_translation("Good evening and welcome to the program.", answer, "en", "es") == \
        "Buenas noches y bienvenidos al programa."


@pytest.mark.parametrize(("answer", "why"), [
    ("", "empty"), ("Sure! Buenas noches.", "a reply"), ("Translation: Buenas noches.", "a reply"),
    ("La traducción es: Buenas noches.", "a reply"), ("«Buenas noches y bienvenidos.»", "quoted"),
    ("Buenas noches y bienvenidos (note: informal).", "a note"), ("Buenas noches.\nBienvenidos.", "more lines"),
    ("```Buenas noches```", "markup"), ("Buenas noches. " * 12, "length"), ("Hola.", "length"),
    ("Добрый вечер и добро пожаловать в программу.", "script"),
    ("Good evening and welcome to the program.", "handed back")])
def test_bad_answers_are_refused(answer, why):
    with pytest.raises(TranslationError, match=why):
        check_translation("Good evening and welcome to the program.", answer, "en", "es")


def test_short_texts_have_slack_and_scripts_are_told_apart():
    assert check_translation("Yes.", "Sí, claro.", "en", "es")
    assert check_translation("Good evening.", "Добрый вечер.", "en", "ru")
    assert check_translation("Good evening.", "こんばんは。", "en", "ja")
    assert script_share("abc", "ru") == 0.0 and script_share("123", "es") is None

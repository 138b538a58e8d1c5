"""The CTranslate2 engine loading real model directories: tiny random-weight Marian (OPUS-MT),
NLLB-200 and M2M-100 models and an Argos Translate package, built by the test and converted with
CTranslate2's own converter (livedub_testkit.tiny_mt; ~10 s, no download). Their weights are
noise except for a bias that makes them emit one word (``WORD``), so what must come out is known:
the real tokeniser, language tokens, decoding limits and detokenisation are what is exercised."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("transformers")
from livedub_testkit import tiny_mt  # noqa: E402
from sts_service.config import StsConfig  # noqa: E402
from sts_service.translation import TranslationError  # noqa: E402
from sts_service.translation.base import Context  # noqa: E402
from sts_service.translation.configure import build_translator  # noqa: E402
from sts_service.translation.ct2 import CTranslate2Translator  # noqa: E402

pytestmark = pytest.mark.timeout(300)
WORD = tiny_mt.WORD


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("mt")
    return {
        "marian": tiny_mt.build_marian(root / "marian"),
        "romance": tiny_mt.build_marian(root / "romance", targets=("es", "ca")),
        "nllb": tiny_mt.build_m2m100(root / "nllb", ("eng_Latn", "spa_Latn", "cat_Latn")),
        "m2m": tiny_mt.build_m2m100(root / "m2m", ("__en__", "__es__", "__ca__")),
        "argos": tiny_mt.build_argos(root / "argos", "en", "es"),
    }


def words(text: str) -> list[str]:
    return text.split()


def test_marian_opus_mt_directory(models):
    tr = CTranslate2Translator(str(models["marian"]), {("en", "es")})
    assert tr.family == "marian" and tr.name == "ctranslate2:ct2" and tr.pairs() == {("en", "es")}
    src = tr._source_tokens("Good evening.", "en", "es")
    assert src[-1] == "</s>" and src[0] != ">>es<<"  # a one-pair model takes no target token
    out = tr.translate("Good evening.", "en", "es")
    # the model repeats WORD until the decoding limit: 3 x the source tokens + 10
    assert set(words(out)) == {WORD} and len(words(out)) == 3 * len(src) + 10
    assert tr.translate("   ", "en", "es") == ""
    with pytest.raises(TranslationError, match="en->ca"):
        tr.translate("Hello.", "en", "ca")


def test_sentences_are_translated_as_one_batch(models):
    tr = CTranslate2Translator(str(models["marian"]), {("en", "es")})
    one = tr.translate("Good evening.", "en", "es")
    two = tr.translate("Good evening. Good evening.", "en", "es")
    assert two == f"{one} {one}"  # each sentence decoded on its own, joined


def test_multi_target_marian_gets_the_target_token(models):
    tr = CTranslate2Translator(str(models["romance"]), {("en", "es"), ("en", "ca")})
    assert tr._source_tokens("Hi.", "en", "ca")[0] == ">>ca<<"
    assert set(words(tr.translate("Hi.", "en", "ca"))) == {WORD}


@pytest.mark.parametrize(("name", "src_token", "tgt_token", "family"), [
    ("nllb", "eng_Latn", "cat_Latn", "nllb"), ("m2m", "__en__", "__ca__", "m2m100")])
def test_nllb_and_m2m100_language_tokens(models, name, src_token, tgt_token, family):
    tr = CTranslate2Translator(str(models[name]), {("en", "es"), ("en", "ca")})
    assert tr.family == family
    src = tr._source_tokens("Good evening.", "en", "ca")
    assert src[0] == src_token and src[-1] == "</s>"
    out = tr.translate("Good evening.", "en", "ca")
    # the forced target token starts the output and is not part of the text
    assert tgt_token not in out and set(words(out)) == {WORD}


def test_nllb_language_missing_from_the_model_is_refused_at_load(models):
    with pytest.raises(TranslationError, match="no language token for de"):
        CTranslate2Translator(str(models["nllb"]), {("en", "de")})


def test_argos_package(models):
    tr = CTranslate2Translator(str(models["argos"]), {("en", "es")})
    assert tr.family == "argos" and tr.name == "ctranslate2:translate-en_es"
    assert "</s>" not in tr._source_tokens("Hi.", "en", "es")
    assert set(words(tr.translate("Good evening.", "en", "es"))) == {WORD}
    with pytest.raises(TranslationError, match="translates en->es"):
        CTranslate2Translator(str(models["argos"]), {("en", "ca")})


def test_broken_directories_are_refused_with_what_is_missing(models, tmp_path):
    with pytest.raises(TranslationError, match="not found"):
        CTranslate2Translator(str(tmp_path / "nope"), {("en", "es")})
    with pytest.raises(TranslationError, match="no model.bin"):
        CTranslate2Translator(str(tmp_path), {("en", "es")})
    bare = shutil.copytree(models["marian"], tmp_path / "bare")
    for spm in ("source.spm", "target.spm"):
        (bare / spm).unlink()
    with pytest.raises(TranslationError, match="no SentencePiece model"):
        CTranslate2Translator(str(bare), {("en", "es")})
    bpe = shutil.copytree(models["argos"], tmp_path / "bpe")
    (bpe / "sentencepiece.model").unlink()
    with pytest.raises(TranslationError, match="BPE"):
        CTranslate2Translator(str(bpe), {("en", "es")})
    corrupt = shutil.copytree(models["marian"], tmp_path / "corrupt")
    (corrupt / "model.bin").write_bytes(b"not a model")
    with pytest.raises(TranslationError, match="cannot load"):
        CTranslate2Translator(str(corrupt), {("en", "es")})


def test_config_routes_pairs_to_their_models(models):
    """`--mt-model` from the configuration: one load per directory, the rest on the default engine."""
    cfg = StsConfig(no_auth=True, mt_models=(f"en-es=ctranslate2:{models['nllb']}",
                                             f"en-ca=ctranslate2:{models['nllb']}",
                                             f"en-de=ctranslate2:{models['marian']}"))
    router = build_translator(cfg)
    assert router.engine("en", "es") is router.engine("en", "ca")  # one NLLB model, loaded once
    assert router.engine("en", "de").family == "marian"
    assert router.names("en")["es"] == "ctranslate2:ct2"
    assert set(words(router.translate("Good evening.", "en", "es"))) == {WORD}
    assert ("en", "de") in router.pairs() and router.default.name == "apertium"
    bad = StsConfig(no_auth=True, mt_models=(f"en-fr=ctranslate2:{models['argos']}",))
    with pytest.raises(TranslationError, match="translates en->es"):
        build_translator(bad)


class Recording:
    """The real model, its `translate_batch` calls kept (what was forced as the target prefix)."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def translate_batch(self, source, target_prefix=None, **kwargs):
        self.calls.append((source, target_prefix))
        return self.model.translate_batch(source, target_prefix, **kwargs)


def recording(tr: CTranslate2Translator) -> Recording:
    tr._model = Recording(tr._model)
    return tr._model


@pytest.mark.parametrize("name", ["marian", "nllb", "argos"])
def test_an_unfinished_sentence_is_continued_with_its_translation_as_prefix(models, name):
    """The previous fragment ended mid-sentence: it is translated again with this one, its
    translation forced as the decoder's start, and only what comes after is returned."""
    tr = CTranslate2Translator(str(models[name]), {("en", "es")})
    calls = recording(tr)
    ctx = Context((("Good evening.", "Buenas noches."), ("We have a lot to talk", "Tenemos mucho")))
    out = tr.translate("about tonight. Good evening.", "en", "es", context=ctx)
    (batch, prefixes), = calls.calls
    joined = tr._source_tokens("We have a lot to talk about tonight.", "en", "es")
    assert batch == [joined, tr._source_tokens("Good evening.", "en", "es")]
    lang = ["spa_Latn"] if name == "nllb" else []
    assert prefixes[0] == [*lang, *tr._sp_target.encode("Tenemos mucho", out_type=str)]
    assert prefixes[1] == (lang or None)
    # the prefix is not in the answer: the continuation of the joined sentence (WORD up to its
    # decoding limit, 3 x the joined source + 10 after the prefix), then the next sentence's WORDs
    assert "Tenemos" not in out and set(words(out)) == {WORD}
    alone = tr.translate("about tonight.", "en", "es")
    assert len(words(alone)) == 3 * len(tr._source_tokens("about tonight.", "en", "es")) + 10
    first = 3 * len(joined) + 10
    assert len(words(out)) >= first > len(words(alone))


@pytest.mark.parametrize("name", ["marian", "nllb"])
def test_without_a_usable_sentence_so_far_each_clause_is_translated_alone(models, name):
    tr = CTranslate2Translator(str(models[name]), {("en", "es")})
    calls = recording(tr)
    alone = tr.translate("about tonight.", "en", "es")
    for ctx in (Context((("We have a lot to talk about.", "Tenemos mucho de que hablar."),)),  # sentence ended
                Context((("We have a lot to talk", ""),)),  # its translation not back yet
                Context((("We have a lot to talk " * 20, "Tenemos mucho " * 20),)),  # too long to carry
                Context((("We have a lot to talk", "..."),))):  # no word to continue
        assert tr.translate("about tonight.", "en", "es", context=ctx) == alone
    # no prefix but the NLLB target language token
    assert all(prefixes is None or prefixes == [["spa_Latn"]] for _, prefixes in calls.calls)


def test_nothing_added_after_the_prefix_falls_back_to_the_clause_alone(models):
    """A model that ends the sentence right after the prefix (it thinks it already said it all)
    would leave the span silent: the clause is translated on its own instead."""
    tr = CTranslate2Translator(str(models["marian"]), {("en", "es")})
    real = tr._model

    class EndsAtPrefix:
        def translate_batch(self, source, target_prefix=None, **kwargs):
            if target_prefix and target_prefix[0]:
                return [type("R", (), {"hypotheses": [list(p or [])]})() for p in target_prefix]
            return real.translate_batch(source, target_prefix, **kwargs)

    tr._model = EndsAtPrefix()
    ctx = Context((("We have a lot to talk", "Tenemos mucho"),))
    assert tr.translate("about tonight.", "en", "es", context=ctx) == tr.translate("about tonight.", "en", "es")


def test_the_router_hands_the_stream_context_to_ctranslate2(models):
    cfg = StsConfig(no_auth=True, mt_models=(f"en-es=ctranslate2:{models['marian']}",))
    router = build_translator(cfg)
    calls = recording(router.engine("en", "es"))
    router.translate("about tonight.", "en", "es", context=Context((("We have a lot to talk", "Tenemos mucho"),)))
    assert calls.calls[0][1] is not None  # the prefix path was taken

"""Tiny random-weight MT models in the real formats, built on the spot (no download, ~10 s).

A SentencePiece model is trained on a dozen sentences, a transformers Marian or M2M-100 model of
d_model 16 is made around it with random weights, and CTranslate2's own converter
(``TransformersConverter``) writes the directory a user would get from ``ct2-transformers-converter
--copy_files ...``. An Argos Translate package is laid out the way its tools install one
(``metadata.json``, ``model/``, ``sentencepiece.model``). What the weights say is noise: a large
output bias on one piece (``WORD``) makes the model repeat it, so a test knows what must come out.
Needs transformers and torch (the development venv has torch through sts-service's coqui extra).
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

WORD = "hola"  # the piece every model built here emits, over and over
SENTENCES = [
    "Good evening and welcome to the program.", "We have a lot to talk about tonight.",
    "Please remember to bring your notebook.", "The weather today is cold and windy.",
    "Buenas noches y bienvenidos al programa.", "Tenemos mucho de que hablar esta noche.",
    "Por favor recuerda traer tu cuaderno.", "hola hola hola amigos",
]  # fmt: skip


def _sentencepiece(path: Path) -> list[str]:
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES * 4), model_writer=buf, vocab_size=70, model_type="unigram",
        pad_id=-1, bos_id=-1, eos_id=1, unk_id=0, hard_vocab_limit=False, character_coverage=1.0,
        user_defined_symbols=[f"\u2581{WORD}"], minloglevel=2)
    path.write_bytes(buf.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    return [sp.id_to_piece(i) for i in range(sp.get_piece_size())]


def _layers(cls, **ids):
    return cls(d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
               decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=512,
               **ids)


def _bias(model, token_id: int) -> None:
    model.final_logits_bias.zero_()  # a buffer: no gradient to mind
    model.final_logits_bias[0, token_id] = 50.0


def build_marian(directory: str | Path, *, targets: tuple[str, ...] = ()) -> Path:
    """An OPUS-MT style model; `targets` adds ``>>xx<<`` tokens (a multi-target model). Returns
    the CTranslate2 directory (``model.bin``, ``shared_vocabulary.json``, ``source.spm``,
    ``target.spm``)."""
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer, set_seed

    work = Path(directory) / "hf"
    work.mkdir(parents=True, exist_ok=True)
    pieces = _sentencepiece(work / "source.spm")
    shutil.copy(work / "source.spm", work / "target.spm")
    vocab = {"</s>": 0, "<unk>": 1}
    for p in [*pieces, *(f">>{t}<<" for t in targets), "<pad>"]:
        vocab.setdefault(p, len(vocab))
    (work / "vocab.json").write_text(json.dumps(vocab))
    MarianTokenizer(source_spm=str(work / "source.spm"), target_spm=str(work / "target.spm"),
                    vocab=str(work / "vocab.json")).save_pretrained(work)
    set_seed(0)
    model = MarianMTModel(_layers(MarianConfig, vocab_size=len(vocab), pad_token_id=vocab["<pad>"],
                                  decoder_start_token_id=vocab["<pad>"], eos_token_id=0))
    _bias(model, vocab[f"\u2581{WORD}"])
    model.save_pretrained(work)
    return _convert(work, Path(directory) / "ct2", ["source.spm", "target.spm"])


def build_m2m100(directory: str | Path, language_tokens: tuple[str, ...]) -> Path:
    """An M2M-100 architecture model whose vocabulary holds `language_tokens`: ``__en__``-style
    for an M2M-100 model, ``eng_Latn``-style for an NLLB-200 one. Returns the CTranslate2
    directory (``sentencepiece.bpe.model`` beside it, as NLLB conversions ship)."""
    from transformers import M2M100Config, M2M100ForConditionalGeneration, M2M100Tokenizer, set_seed

    work = Path(directory) / "hf"
    work.mkdir(parents=True, exist_ok=True)
    pieces = _sentencepiece(work / "sentencepiece.bpe.model")
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for p in [*pieces, *language_tokens]:
        vocab.setdefault(p, len(vocab))
    (work / "vocab.json").write_text(json.dumps(vocab))
    tok = M2M100Tokenizer(vocab_file=str(work / "vocab.json"), spm_file=str(work / "sentencepiece.bpe.model"))
    tok.save_pretrained(work)
    extra = set(getattr(tok, "additional_special_tokens", []) or [])
    size = len(set(tok.get_vocab()) | extra) + tok.num_madeup_words
    set_seed(0)
    model = M2M100ForConditionalGeneration(_layers(
        M2M100Config, vocab_size=size, pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2))
    # M2M-100 has no output bias: the decoder's last layer norm gives a constant state, and
    # only WORD's output row answers it.
    model.model.decoder.layer_norm.weight.data.zero_()
    model.model.decoder.layer_norm.bias.data.fill_(1.0)
    model.lm_head.weight.data.mul_(0.01)
    model.lm_head.weight.data[vocab[f"\u2581{WORD}"]] = 1.0
    model.save_pretrained(work)
    return _convert(work, Path(directory) / "ct2", ["sentencepiece.bpe.model"])


def build_argos(directory: str | Path, from_code: str = "en", to_code: str = "es") -> Path:
    """An Argos Translate package directory (as ``argospm install`` leaves it): a CTranslate2 model
    under ``model/``, ``sentencepiece.model``, ``metadata.json``."""
    package = Path(directory) / f"translate-{from_code}_{to_code}"
    ct2 = build_marian(Path(directory) / "marian")
    package.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ct2, package / "model", dirs_exist_ok=True)
    for name in ("source.spm", "target.spm"):
        (package / "model" / name).unlink()
    shutil.copy(ct2 / "source.spm", package / "sentencepiece.model")
    (package / "metadata.json").write_text(json.dumps({
        "package_version": "1.0", "argos_version": "1.0", "from_code": from_code, "to_code": to_code,
        "from_name": from_code, "to_name": to_code}))
    return package


def _convert(work: Path, out: Path, copy_files: list[str]) -> Path:
    from ctranslate2.converters import TransformersConverter

    TransformersConverter(str(work), copy_files=copy_files).convert(str(out), force=True)
    return out

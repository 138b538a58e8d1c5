"""Neural MT offline with CTranslate2: Marian/OPUS-MT, NLLB-200, M2M-100 and Argos Translate packages.

Each is a CTranslate2 model directory (``model.bin`` + its vocabulary) with the SentencePiece
model(s) it was trained with; what differs is how a sentence becomes the model's tokens:

- Marian/OPUS-MT: pieces + ``</s>``; a multi-target model (``opus-mt-en-ROMANCE``) wants
  ``>>es<<`` first, used when the vocabulary has it. ``source.spm`` / ``target.spm``.
- NLLB-200: ``eng_Latn`` + pieces + ``</s>``, the decoder forced to start with ``spa_Latn``.
- M2M-100: the same with ``__en__`` / ``__es__``.
- Argos Translate package (``metadata.json``, ``model/``, ``sentencepiece.model``, as its own
  tools install it): pieces alone; its OpenNMT-py model adds nothing.

The family is read from the directory (Argos: ``metadata.json``; NLLB/M2M: their language tokens
in the vocabulary; else Marian), so one kind of entry, ``ctranslate2:PATH``, serves them all.
Nothing is downloaded: the path must hold everything. Input is split into sentences and
translated as one batch (OPUS-MT is trained on sentences, and drops some of a run-on input).

A fragment cut in the middle of a sentence is translated with the sentence so far: when the
stream's previous fragments (``Context``) did not end their sentence, their source is put before
this text's first sentence and their translation is forced as the target prefix, and only what
the model adds after it is returned (the earlier part was already dubbed). "We have a lot to talk"
| "about tonight." then continues "Tenemos mucho de que hablar" instead of starting a sentence
"Sobre esta noche." The context is bounded (``MAX_CONTEXT_CHARS`` of source, ``MAX_PREFIX_TOKENS``
of prefix); without a usable one (the sentence ended, a translation not back yet, a prefix too
long, or nothing added after it) the text is translated on its own.

Thread-safe: ``ctranslate2.Translator`` runs up to ``inter_threads`` calls in parallel.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from . import languages
from .base import Context, TranslationError

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+(?=\S)")
_FINAL = re.compile(r"[.!?…。！？][\"'”’»)\]]*$")
_SPM_SOURCE = ("source.spm", "sentencepiece.bpe.model", "spm.model", "sentencepiece.model")
_SPM_TARGET = ("target.spm",)
MAX_INPUT_TOKENS = 512
MAX_CONTEXT_CHARS = 300  # of the sentence so far put before the text
MAX_PREFIX_TOKENS = 128  # of its translation forced as the target prefix


def _vocabulary(model_dir: Path) -> list[str]:
    """The model's (source) vocabulary: CTranslate2 writes it as JSON (>= 3.0) or one token per line."""
    for name in ("shared_vocabulary", "source_vocabulary"):
        if (model_dir / f"{name}.json").is_file():
            return list(json.loads((model_dir / f"{name}.json").read_text(encoding="utf-8")))
        if (model_dir / f"{name}.txt").is_file():
            return (model_dir / f"{name}.txt").read_text(encoding="utf-8").splitlines()
    raise TranslationError(f"ctranslate2: {model_dir} has no shared_vocabulary/source_vocabulary file")


def ends_sentence(text: str) -> bool:
    """Whether a transcript ends with final punctuation (a closing quote or bracket may follow)."""
    return bool(_FINAL.search(text.strip()))


def sentence_so_far(context: Context | None) -> tuple[str, str] | None:
    """(source, translation) of the unfinished sentence the context ends with, or None when the
    last fragment ended its sentence or its translation is not known yet. Taken from the latest
    fragments back to the last sentence end (inside a fragment too: its last sentence) or to one
    whose translation is not known, at most ``MAX_CONTEXT_CHARS`` of source (whole fragments,
    the latest kept)."""
    if not context or not context.previous or ends_sentence(context.previous[-1][0]):
        return None
    sources: list[str] = []
    targets: list[str] = []
    for source, target in reversed(context.previous):
        source, target = source.strip(), target.strip()
        if not source or ends_sentence(source):
            break
        if not target:  # its translation is not back yet: no prefix to force from here on
            break
        src_parts, tgt_parts = _SENTENCE_END.split(source), _SENTENCE_END.split(target)
        if len(src_parts) > 1:  # a sentence ends inside this fragment: keep its last sentence
            if len(tgt_parts) != len(src_parts):
                return None  # which part of the translation is the last sentence is unknown
            source, target = src_parts[-1], tgt_parts[-1]
        if sum(map(len, sources)) + len(source) > MAX_CONTEXT_CHARS:
            break
        sources.insert(0, source)
        targets.insert(0, target)
        if len(src_parts) > 1:
            break
    if not sources:
        return None
    return " ".join(sources), " ".join(targets)


def _first(folder: Path, names: tuple[str, ...]) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


class CTranslate2Translator:
    """One CTranslate2 model serving the pairs it is configured for."""

    takes_context = True

    def __init__(self, path: str, pairs: set[tuple[str, str]], *, compute_type: str = "int8",
                 inter_threads: int = 2, intra_threads: int = 1, beam_size: int = 4) -> None:
        root = Path(path).expanduser()
        if not root.is_dir():
            raise TranslationError(f"ctranslate2: model directory not found: {root}")
        self._pairs = set(pairs)
        self.beam_size = beam_size
        model_dir, spm_source, spm_target = self._layout(root)
        vocab = set(_vocabulary(model_dir))
        self.family = self._family(root, vocab)
        self._lang_tokens = self._language_tokens(vocab)
        try:
            import ctranslate2
            import sentencepiece
        except ImportError as exc:  # pragma: no cover - both are dependencies of the service
            raise TranslationError(f"ctranslate2: {exc.name} is not installed") from exc
        self._sp_source = sentencepiece.SentencePieceProcessor(model_file=str(spm_source))
        self._sp_target = (sentencepiece.SentencePieceProcessor(model_file=str(spm_target))
                           if spm_target and spm_target != spm_source else self._sp_source)
        try:
            self._model = ctranslate2.Translator(str(model_dir), device="cpu", compute_type=compute_type,
                                                 inter_threads=inter_threads, intra_threads=intra_threads)
        except (RuntimeError, ValueError) as exc:
            raise TranslationError(f"ctranslate2: cannot load {model_dir}: {exc}") from None
        self.name = f"ctranslate2:{root.name}"

    # ------------------------------------------------------------ the directory

    def _layout(self, root: Path) -> tuple[Path, Path, Path | None]:
        """(CTranslate2 model dir, source SentencePiece model, target one or None)."""
        if (root / "metadata.json").is_file() and (root / "model").is_dir():  # an Argos package
            meta = json.loads((root / "metadata.json").read_text(encoding="utf-8"))
            pair = (meta.get("from_code"), meta.get("to_code"))
            if any(p != pair for p in self._pairs):
                raise TranslationError(f"ctranslate2: Argos package {root.name} translates {pair[0]}->{pair[1]}, "
                                       f"configured for {', '.join(f'{s}->{t}' for s, t in sorted(self._pairs))}")
            spm = root / "sentencepiece.model"
            if not spm.is_file():
                raise TranslationError(f"ctranslate2: Argos package {root.name} has no sentencepiece.model "
                                       "(packages tokenised with BPE are not supported)")
            self._argos = True
            return root / "model", spm, None
        self._argos = False
        if not (root / "model.bin").is_file():
            raise TranslationError(f"ctranslate2: {root} has no model.bin (not a CTranslate2 model or Argos package)")
        source = _first(root, _SPM_SOURCE)
        if source is None:
            raise TranslationError(f"ctranslate2: {root} has no SentencePiece model ({', '.join(_SPM_SOURCE)}); "
                                   "convert with --copy_files source.spm target.spm (or the model's .model file)")
        return root, source, _first(root, _SPM_TARGET)

    def _family(self, root: Path, vocab: set[str]) -> str:
        if self._argos:
            return "argos"
        if "eng_Latn" in vocab:
            return "nllb"
        if "__en__" in vocab:
            return "m2m100"
        return "marian"

    def _language_tokens(self, vocab: set[str]) -> dict[str, str]:
        """The language tokens the pairs need, checked against the vocabulary now (not mid-stream)."""
        codes = {c for pair in self._pairs for c in pair}
        if self.family == "nllb":
            tokens = {c: languages.nllb_code(c) or "" for c in codes}
        elif self.family == "m2m100":
            tokens = {c: f"__{c}__" for c in codes}
        else:
            # Marian: a multi-target model names the target (>>es<<); a one-pair model does not.
            return {t: f">>{t}<<" for _, t in self._pairs if f">>{t}<<" in vocab}
        missing = sorted(c for c, tok in tokens.items() if tok not in vocab)
        if missing:
            raise TranslationError(f"ctranslate2: {self.family} model has no language token for "
                                   f"{', '.join(missing)}")
        return tokens

    # ------------------------------------------------------------ Translator

    def pairs(self) -> set[tuple[str, str]]:
        return set(self._pairs)

    def _source_tokens(self, sentence: str, source: str, target: str) -> list[str]:
        pieces = self._sp_source.encode(sentence, out_type=str)[: MAX_INPUT_TOKENS - 3]
        if self.family == "argos":
            return pieces
        if self.family in ("nllb", "m2m100"):
            return [self._lang_tokens[source], *pieces, "</s>"]
        prefix = [self._lang_tokens[target]] if target in self._lang_tokens else []
        return [*prefix, *pieces, "</s>"]

    def _decode(self, tokens: list[str], target: str) -> str:
        if self.family in ("nllb", "m2m100") and tokens and tokens[0] == self._lang_tokens[target]:
            tokens = tokens[1:]
        tokens = [t for t in tokens if t not in ("</s>", "<s>", "<pad>")]
        return self._sp_target.decode_pieces(tokens).strip()

    def _target_prefix(self, translation: str, target: str) -> list[str]:
        """Tokens the decoder is forced to start with: the target language token (NLLB/M2M) and
        the sentence so far in the target language (its final punctuation dropped, as the
        sentence goes on)."""
        lang = [self._lang_tokens[target]] if self.family in ("nllb", "m2m100") else []
        text = translation.rstrip().rstrip(".!?…。！？").rstrip()
        return [*lang, *(self._sp_target.encode(text, out_type=str) if text else [])]

    def _continuation(self, tokens: list[str], prefix: list[str], target: str) -> str:
        """What the model added after the forced prefix, from the first whole word (a piece that
        only extends the prefix's last word belongs to speech already dubbed)."""
        if tokens[: len(prefix)] != prefix:
            return ""
        rest = tokens[len(prefix):]
        while rest and not rest[0].startswith("\u2581"):
            rest = rest[1:]
        return self._decode(rest, target)

    def translate(self, text: str, source: str, target: str, *, context: Context | None = None) -> str:
        if (source, target) not in self._pairs:
            raise TranslationError(f"{self.name}: unsupported pair {source}->{target}")
        sentences = [s for s in _SENTENCE_END.split(text.strip()) if s.strip()]
        if not sentences:
            return ""
        so_far = sentence_so_far(context)
        if so_far is not None:
            prefix, bare = self._target_prefix(so_far[1], target), self._target_prefix("", target)
            if len(bare) < len(prefix) <= MAX_PREFIX_TOKENS:  # some words to continue, not too many
                joined = self._run([f"{so_far[0]} {sentences[0]}", *sentences[1:]], source, target,
                                   [prefix] + [bare] * (len(sentences) - 1))
                first = self._continuation(joined[0], prefix, target)
                if first:
                    rest = (self._decode(t, target) for t in joined[1:])
                    return " ".join(t for t in (first, *rest) if t)
        prefixes = [self._target_prefix("", target)] * len(sentences)
        return " ".join(t for t in (self._decode(h, target) for h in self._run(sentences, source, target, prefixes))
                        if t)

    def _run(self, sentences: list[str], source: str, target: str, prefixes: list[list[str]]) -> list[list[str]]:
        """Best hypothesis (prefix included) of each sentence, decoded as one batch."""
        batch = [self._source_tokens(s, source, target) for s in sentences]
        limit = max(len(p) + 3 * len(b) + 10 for p, b in zip(prefixes, batch, strict=True))
        try:
            results = self._model.translate_batch(
                batch, target_prefix=[p or None for p in prefixes] if any(prefixes) else None,
                beam_size=self.beam_size, max_batch_size=16,
                max_decoding_length=min(MAX_INPUT_TOKENS, limit), max_input_length=MAX_INPUT_TOKENS)
        except (RuntimeError, ValueError) as exc:
            raise TranslationError(f"{self.name}: {exc}") from None
        return [r.hypotheses[0] for r in results]

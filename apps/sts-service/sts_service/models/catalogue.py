"""The curated catalogue `livedub-models pull` offers: Piper voices for the offered target languages,
OPUS-MT CTranslate2 pairs, larger faster-whisper CTranslate2 models.

Each file has its URL, size and sha256. This machine has no network but the package registries, so
none of the URLs, sizes or digests below could be checked here: every entry is marked
``pinned=False`` (size and sha256 unknown, URL as published by the project named in `source`).
`pull` refuses an unpinned entry unless given ``--accept-unpinned``: it then downloads, checks what
it can (the size when the server states it), prints the sha256 it computed and keeps it beside the
file (``<file>.sha256``), so later pulls and `list` verify against it. To pin an entry, fill in
`size` and `sha256` of each file (``livedub-models pull --accept-unpinned`` prints them) and set
``pinned=True``. A catalogue of one's own (a mirror, other models) is a JSON file of the same shape
(``--catalogue``; see :func:`load_catalogue`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

PIPER_BASE = "https://huggingface.co/rhasspy/piper-voices/resolve/v1.0.0"
WHISPER_BASE = "https://huggingface.co/Systran"
WHISPER_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")
OPUS_FILES = ("model.bin", "config.json", "shared_vocabulary.json", "source.spm", "target.spm")


@dataclass(frozen=True)
class ModelFile:
    path: str  # relative to the entry's directory in the models dir (Piper: the piper/ directory)
    url: str
    size: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kind: str  # piper | whisper | opus-mt (the models-dir subdirectory, see store.py)
    description: str
    files: tuple[ModelFile, ...]
    languages: tuple[str, ...] = ()
    source: str = ""
    pinned: bool = False
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def size(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if None in sizes else sum(sizes)

    def usage(self) -> str:
        """The flag that makes the sts-service use this model once pulled."""
        if self.kind == "piper":
            lang = self.languages[0] if self.languages else "LANG"
            return f"--tts-voice {lang}={self.kind}:{self.name}"
        if self.kind == "whisper":
            return f"--asr-model {self.name}"
        return f"opus-mt CTranslate2 model directory: <models-dir>/opus-mt/{self.name}"


def _piper(name: str, lang: str, description: str) -> ModelEntry:
    locale, speaker, quality = name.split("-", 2)
    base = f"{PIPER_BASE}/{locale.split('_')[0]}/{locale}/{speaker}/{quality}/{name}"
    return ModelEntry(name, "piper", description,
                      (ModelFile(f"{name}.onnx", f"{base}.onnx"), ModelFile(f"{name}.onnx.json", f"{base}.onnx.json")),
                      (lang,), "rhasspy/piper-voices v1.0.0 (Hugging Face)")


def _whisper(name: str, description: str) -> ModelEntry:
    repo = f"{WHISPER_BASE}/faster-whisper-{name}/resolve/main"
    return ModelEntry(name, "whisper", description, tuple(ModelFile(f, f"{repo}/{f}") for f in WHISPER_FILES),
                      ("en",) if name.endswith(".en") else (), "Systran faster-whisper conversions (Hugging Face)")


def _opus(src: str, tgt: str) -> ModelEntry:
    name = f"{src}-{tgt}"
    repo = f"https://huggingface.co/gaudi/opus-mt-{name}-ctranslate2/resolve/main"
    return ModelEntry(name, "opus-mt", f"Helsinki-NLP OPUS-MT {src}->{tgt}, CTranslate2 int8 conversion",
                      tuple(ModelFile(f, f"{repo}/{f}") for f in OPUS_FILES), (tgt,),
                      "community CTranslate2 conversion of Helsinki-NLP/opus-mt (Hugging Face); the URL is "
                      "a guess at its layout: or convert it yourself with ct2-transformers-converter")


CATALOGUE: tuple[ModelEntry, ...] = (
    _piper("es_ES-davefx-medium", "es", "Spanish (Spain), male, medium quality, 22.05 kHz"),
    _piper("es_ES-sharvard-medium", "es", "Spanish (Spain), two speakers (male 0, female 1), medium quality"),
    _piper("es_MX-claude-high", "es", "Spanish (Mexico), male, high quality"),
    _piper("ca_ES-upc_ona-medium", "ca", "Catalan, female, medium quality"),
    _piper("ca_ES-upc_pau-x_low", "ca", "Catalan, male, extra-low quality (16 kHz, fast)"),
    _opus("en", "es"),
    _opus("en", "ca"),
    _whisper("base.en", "faster-whisper base.en (74 M parameters), English only"),
    _whisper("small.en", "faster-whisper small.en (244 M parameters), English only"),
    _whisper("small", "faster-whisper small (244 M parameters), multilingual"),
    _whisper("medium", "faster-whisper medium (769 M parameters), multilingual"),
)


def load_catalogue(path: str | Path | None = None) -> dict[str, ModelEntry]:
    """The built-in catalogue, or a JSON one: ``[{"name", "kind", "description", "languages",
    "pinned", "files": [{"path", "url", "size", "sha256"}]}]``."""
    if path is None:
        return {e.name: e for e in CATALOGUE}
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    entries = {}
    for item in raw:
        files = tuple(ModelFile(f["path"], f["url"], f.get("size"), f.get("sha256")) for f in item["files"])
        entry = ModelEntry(item["name"], item["kind"], item.get("description", ""), files,
                           tuple(item.get("languages", ())), item.get("source", str(path)),
                           bool(item.get("pinned", all(f.sha256 and f.size is not None for f in files))))
        entries[entry.name] = entry
    return entries

"""The curated catalogue `livedub-models pull` offers: Piper voices for the offered target languages,
OPUS-MT CTranslate2 pairs, larger faster-whisper CTranslate2 models.

Each file has its URL, size and sha256. This machine has no network but the package registries, so
none of the URLs, sizes or digests below could be checked here: no entry has a sha256, so every
entry is unpinned (URL as published by the project named in `source`). An entry is pinned when
every file has a sha256 (there is no flag to say so). `pull` refuses an unpinned entry unless given
``--accept-unpinned``: it then downloads, checks what it can (the size when the catalogue or the
server states it), prints the sha256 it computed and keeps it beside the file (``<file>.sha256``),
so later pulls and `list` verify the file against it. To pin an entry, fill in `size` and `sha256`
of each file (``livedub-models pull --accept-unpinned`` prints them). A catalogue of one's own (a
mirror, other models) is a JSON file of the same shape (``--catalogue``; see
:func:`load_catalogue`): its names and file paths are checked, since they become paths under the
models directory.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .store import KINDS

PIPER_BASE = "https://huggingface.co/rhasspy/piper-voices/resolve/v1.0.0"
WHISPER_BASE = "https://huggingface.co/Systran"
WHISPER_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")
OPUS_FILES = ("model.bin", "config.json", "shared_vocabulary.json", "source.spm", "target.spm")
# A name or a path component: a plain file name (no separator, no leading dot, so never . or ..).
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class CatalogueError(ValueError):
    """A catalogue that cannot be used as it is; the message names the entry and the field."""


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
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def pinned(self) -> bool:
        """Every file has a sha256: only then is what the server sends checked against the catalogue."""
        return all(f.sha256 for f in self.files)

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
    "files": [{"path", "url", "size", "sha256"}]}]`` (a ``pinned`` key is ignored: an entry is pinned
    when each file has a sha256). Any entry that would not stay in its place in the models directory,
    or is malformed, -> CatalogueError."""
    if path is None:
        entries = CATALOGUE
    else:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CatalogueError(f"catalogue {path}: {exc}") from None
        if not isinstance(raw, list):
            raise CatalogueError(f"catalogue {path}: a JSON list of entries expected")
        entries = tuple(_entry(item, str(path)) for item in raw)
    for entry in entries:
        check_entry(entry, f"catalogue {path or 'built-in'}")
    return {e.name: e for e in entries}


def _entry(item, source: str) -> ModelEntry:
    try:
        files = tuple(ModelFile(f["path"], f["url"], f.get("size"), f.get("sha256")) for f in item["files"])
        return ModelEntry(item["name"], item["kind"], item.get("description", ""), files,
                          tuple(item.get("languages", ())), item.get("source", source))
    except (KeyError, TypeError, AttributeError) as exc:
        raise CatalogueError(f"catalogue {source}: entry {str(item)[:80]}: missing or malformed {exc}") from None


def check_entry(entry: ModelEntry, where: str) -> None:
    """The name and every file path are plain relative names under the entry's directory (no
    absolute path, no `..`, no separator in the name), digests and sizes well formed."""
    def bad(what: str) -> CatalogueError:
        return CatalogueError(f"{where}: entry {entry.name!r}: {what}")

    if not isinstance(entry.name, str) or not SAFE_NAME.fullmatch(entry.name):
        raise bad(f"name {entry.name!r} is not a plain name (letters, digits, . _ + -; no / or ..)")
    if entry.kind not in KINDS:
        raise bad(f"kind {entry.kind!r} is not one of {', '.join(KINDS)}")
    if not entry.files:
        raise bad("no files")
    for f in entry.files:
        if not isinstance(f.path, str) or f.path.startswith("/") or "\\" in f.path:
            raise bad(f"file path {f.path!r} is absolute or not a POSIX path")
        parts = PurePosixPath(f.path).parts
        if not parts or not all(SAFE_NAME.fullmatch(p) for p in parts) or f.path != "/".join(parts):
            raise bad(f"file path {f.path!r} has a component that is not a plain name (no .., no empty part)")
        if not isinstance(f.url, str) or not f.url.lower().startswith(("https://", "http://")):
            raise bad(f"file {f.path}: only http(s) URLs are fetched")
        if f.sha256 is not None and not (isinstance(f.sha256, str) and SHA256.fullmatch(f.sha256)):
            raise bad(f"file {f.path}: sha256 {f.sha256!r} is not 64 hex digits")
        if f.size is not None and (not isinstance(f.size, int) or isinstance(f.size, bool) or f.size < 0):
            raise bad(f"file {f.path}: size {f.size!r} is not a byte count")

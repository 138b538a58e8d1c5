"""Where models live under the models directory, so the sts-service finds a pulled model by name.

Layout (what `livedub-models pull` writes):

    <dir>/piper/<voice>.onnx, <voice>.onnx.json       Piper voices
    <dir>/whisper/<name>/                              faster-whisper CTranslate2 models
    <dir>/opus-mt/<src>-<tgt>/                         OPUS-MT CTranslate2 models (model.bin, *.spm)
"""

from __future__ import annotations

import os
from pathlib import Path

KINDS = ("piper", "whisper", "opus-mt")
ENV = "STS_MODELS_DIR"


def default_models_dir() -> str:
    """``$XDG_DATA_HOME/livedub/models`` (default ``~/.local/share/livedub/models``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "livedub", "models")


class ModelStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()

    def path(self, kind: str, name: str) -> Path:
        """Where model `name` of `kind` lives (a file for Piper, a directory otherwise)."""
        if kind not in KINDS:
            raise ValueError(f"unknown model kind {kind!r} (one of {', '.join(KINDS)})")
        if kind == "piper":
            return self.root / "piper" / (name if name.endswith(".onnx") else f"{name}.onnx")
        return self.root / kind / name

    def find(self, kind: str, name: str) -> Path | None:
        """The model if it is there (a bare name only: paths are taken as they are)."""
        if not name or "/" in name or os.sep in name:
            return None
        path = self.path(kind, name)
        return path if path.exists() else None

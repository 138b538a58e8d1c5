"""Coqui TTS (``coqui-tts``, the optional ``coqui`` extra): any Coqui model from local files.

The model is loaded once in the constructor through Coqui's own loader
(``TTS.utils.synthesizer.Synthesizer``) from a checkpoint (``.pth`` file, or a model directory)
and its ``config.json``. Nothing is downloaded: a missing path is an error naming that path.

Install: the ``coqui`` extra of livedub-sts-service, ``pip install './apps/sts-service[coqui]' torch==2.13.0``
from the repository root (``make setup`` installs it). On this CPU-only setup the torchaudio
wheel from PyPI is a CUDA build whose native libraries (``torchaudio/lib/*.so``) cannot load
next to the CPU torch; they must be disabled (renamed) for ``import TTS`` to work. Coqui only
needs torchaudio's pure-Python parts for inference (``scripts/bootstrap.sh`` does the renaming).

torch is imported only when this engine is constructed, so the rest of sts-service never pays
for it. Synthesis is serialised by a lock (one model, shared state in Coqui's Synthesizer).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from .base import SynthesisError

INSTALL_HINT = (
    "install sts-service's coqui extra (make setup does): pip install './apps/sts-service[coqui]' torch==2.13.0"
)
TORCHAUDIO_HINT = (
    "torchaudio's native libraries failed to load (a CUDA build next to the CPU torch); disable them: "
    "for f in \"$(python -c 'import importlib.util,os;"
    'print(os.path.dirname(importlib.util.find_spec("torchaudio").origin))\')"/lib/*.so; '
    'do mv "$f" "$f.disabled"; done  (make setup does this)'
)


def _import_coqui() -> Any:
    """Import Coqui's Synthesizer class, turning every known install problem into a clear ImportError."""
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"Coqui TTS needs torch, which is not installed: {INSTALL_HINT}") from exc
    try:
        import torchaudio  # noqa: F401  (imported first so its failure is reported precisely)
    except ImportError as exc:
        raise ImportError(f"Coqui TTS needs torchaudio, which is not installed: {INSTALL_HINT}") from exc
    except OSError as exc:
        raise ImportError(f"{TORCHAUDIO_HINT} ({exc})") from exc
    try:
        from TTS.utils.synthesizer import Synthesizer
    except ModuleNotFoundError as exc:
        raise ImportError(f"coqui-tts is not installed ({exc.name} missing): {INSTALL_HINT}") from exc
    except ImportError as exc:  # TTS/__init__ raises ImportError for missing torchaudio/torchcodec
        raise ImportError(
            f"coqui-tts cannot be imported: {' '.join(str(exc).split())} -- {INSTALL_HINT}"
        ) from exc
    except OSError as exc:
        raise ImportError(f"{TORCHAUDIO_HINT} ({exc})") from exc
    return Synthesizer


def _norm_lang(code: str) -> str:
    """'es-ES' / 'es_ES' / 'ES' -> 'es'."""
    return code.replace("_", "-").split("-")[0].lower()


class CoquiSynthesizer:
    """One Coqui TTS model (VITS, Tacotron2, Glow-TTS, ...) loaded from local files.

    ``model_path`` is the checkpoint file (or a model directory); ``config_path`` defaults to
    ``config.json`` beside it. ``language`` is what a single-language model speaks; a
    multilingual model speaks the languages in its config. ``voice`` in :meth:`synthesize`
    (or ``speaker`` here) picks a speaker of a multi-speaker model.
    """

    def __init__(
        self,
        model_path: str,
        config_path: str | None = None,
        language: str = "es",
        use_cuda: bool = False,
        *,
        speaker: str | None = None,
    ) -> None:
        model = Path(model_path).expanduser()
        if not model.exists():
            raise SynthesisError(
                f"Coqui TTS model not found: {model} (no download: give a local checkpoint path)"
            )
        model_dir = model if model.is_dir() else model.parent
        config = Path(config_path).expanduser() if config_path else model_dir / "config.json"
        if not config.is_file():
            raise SynthesisError(f"Coqui TTS model config not found: {config}")

        coqui_synthesizer_cls = _import_coqui()
        try:
            self._synth = coqui_synthesizer_cls(
                tts_checkpoint=str(model), tts_config_path=str(config), use_cuda=use_cuda
            )
        except Exception as exc:
            raise SynthesisError(
                f"Coqui TTS could not load model {model} with config {config}: {exc}"
            ) from exc

        tts_model = self._synth.tts_model
        self.sample_rate = int(self._synth.output_sample_rate)
        self.language = _norm_lang(language)
        self.speaker = speaker
        self.name = f"coqui:{model.stem if model.is_file() else model.name}"
        self._pad = int(getattr(_synth_module(), "PAD_SILENCE_SAMPLES", 0))

        # Multilingual model: languages come from its config; map ISO codes to the model's names.
        self._model_languages: dict[str, str] = {}
        lm = getattr(tts_model, "language_manager", None)
        if lm is not None and lm.num_languages > 1:
            for name in lm.language_names:
                self._model_languages.setdefault(_norm_lang(name), name)
        sm = getattr(tts_model, "speaker_manager", None)
        self._speakers: list[str] = list(sm.name_to_id) if sm is not None and sm.num_speakers > 1 else []
        self._lock = threading.Lock()

    # -- Synthesizer interface -------------------------------------------------------------
    def languages(self) -> set[str]:
        return set(self._model_languages) if self._model_languages else {self.language}

    def speakers(self) -> list[str]:
        """Speaker names of a multi-speaker model (empty for a single-speaker one)."""
        return list(self._speakers)

    def synthesize(self, text: str, language: str, voice: str | None = None) -> tuple[np.ndarray, int]:
        lang = _norm_lang(language)
        if lang not in self.languages():
            raise SynthesisError(f"{self.name} speaks {sorted(self.languages())}, not {language!r}")
        model_language = self._model_languages.get(lang)  # None for a single-language model
        speaker = self._speaker_name(voice)
        if not text.strip():
            return np.zeros(0, dtype=np.float32), self.sample_rate
        import torch

        try:
            with self._lock, torch.inference_mode():
                wav = self._synth.tts(text, speaker_name=speaker, language_name=model_language)
        except Exception as exc:
            raise SynthesisError(f"{self.name} failed: {exc}") from exc
        audio = np.asarray(wav, dtype=np.float32).reshape(-1)
        # Coqui appends PAD_SILENCE_SAMPLES of zeros after every sentence: drop the trailing one,
        # the pipeline fits the clip to its span itself.
        if self._pad and audio.size >= self._pad and not audio[-self._pad :].any():
            audio = audio[: -self._pad]
        if not np.isfinite(audio).all():
            raise SynthesisError(f"{self.name} produced non-finite samples")
        return np.clip(audio, -1.0, 1.0), self.sample_rate

    # -- helpers ---------------------------------------------------------------------------
    def _speaker_name(self, voice: str | None) -> str | None:
        voice = voice or self.speaker
        if not self._speakers:
            if voice is None:
                return None
            raise SynthesisError(f"{self.name} is a single-speaker model; it has no speaker {voice!r}")
        if voice is None:
            return self._speakers[0]
        if voice in self._speakers:
            return voice
        raise SynthesisError(f"{self.name} has no speaker {voice!r} (has: {', '.join(self._speakers[:10])})")


def _synth_module() -> Any:
    import TTS.utils.synthesizer as synth_module

    return synth_module

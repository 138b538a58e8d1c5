"""Apertium rule-based MT: the default engine (Debian packages, offline, CPU-cheap).

Apertium is a pipeline of ~12 small programs. Forking ``apertium -u eng-spa`` per sentence
spends almost all its time loading the transducers, so each language pair keeps warm pipelines
started in *null-flush* mode (``-z``, the way apertium-apy serves): a request is written to the
pipeline's stdin terminated by NUL and the translation comes back terminated by NUL, in a few ms.
Starting a pipeline takes a good part of a second, so the preloaded pairs start theirs at
construction, not on the first fragment. If a pipeline cannot start or stalls, the call falls
back to a one-shot ``apertium -u`` subprocess (bench/bench_engines.py measures both; numbers in
bench/README.md).

Thread-safe: each pair has a small pool of pipelines; a pipeline serves one call at a time.
"""

from __future__ import annotations

import os
import queue
import re
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from .base import TranslationError

# ISO 639-1 (wire) <-> ISO 639-3 (Apertium mode names).
ISO1_TO_APERTIUM: dict[str, str] = {
    "en": "eng", "es": "spa", "ca": "cat", "fr": "fra", "pt": "por", "it": "ita", "de": "deu",
    "gl": "glg", "eu": "eus", "oc": "oci", "ro": "ron", "nl": "nld", "af": "afr", "an": "arg",
    "ast": "ast", "br": "bre", "cy": "cym", "eo": "epo", "ga": "gle", "is": "isl", "mt": "mlt",
    "nb": "nob", "nn": "nno", "sv": "swe", "da": "dan", "pl": "pol", "ru": "rus", "uk": "ukr",
}  # fmt: skip
APERTIUM_TO_ISO1 = {v: k for k, v in ISO1_TO_APERTIUM.items()}

DEFAULT_MODES_DIRS = ("/usr/share/apertium/modes", "/usr/local/share/apertium/modes")
_RESERVED = re.compile(r"([\[\]\\^$/@<>{}])")
_UNESCAPE = re.compile(r"\\(.)")
_GEN_MARK = re.compile(r"(?<![\w#])[#@*](?=\w)")


def discover_modes(modes_dirs: Iterable[str] = DEFAULT_MODES_DIRS) -> dict[str, Path]:
    """Installed Apertium modes by name (``eng-spa``, ``eng-cat_valencia``, ...)."""
    found: dict[str, Path] = {}
    for d in modes_dirs:
        p = Path(d)
        if p.is_dir():
            for f in sorted(p.glob("*.mode")):
                found.setdefault(f.stem, f)
    return found


class _Pipeline:
    """One warm null-flush Apertium pipeline for one mode; serves one request at a time."""

    def __init__(self, mode_file: Path) -> None:
        script = subprocess.run(
            ["apertium-wblank-mode", "-z", str(mode_file)],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        if not script:
            raise TranslationError(f"apertium-wblank-mode gave no pipeline for {mode_file}")
        # $1 = generator flag (-n: no unknown-word marks, like `apertium -u`), $2 = tagger flag.
        self.proc = subprocess.Popen(
            ["bash", "-c", script, "apertium-pipeline", "-n", ""],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, text: str, timeout: float) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        # lt-proc needs a character after the last word before the NUL, hence the newline.
        self.proc.stdin.write(_RESERVED.sub(r"\\\1", text).encode("utf-8") + b"\n\0")
        self.proc.stdin.flush()
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        buf = bytearray()
        while not buf.endswith(b"\0"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError(f"apertium pipeline gave no answer in {timeout}s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise EOFError("apertium pipeline exited")
            buf += chunk
        return _UNESCAPE.sub(r"\1", buf[:-1].decode("utf-8", "replace"))

    def close(self) -> None:
        if self.alive():
            try:
                os.killpg(self.proc.pid, 15)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class _Pool:
    def __init__(self, mode_file: Path, size: int) -> None:
        self.mode_file = mode_file
        self.size = size
        self.idle: queue.LifoQueue[_Pipeline] = queue.LifoQueue()
        self.started = 0
        self.lock = threading.Lock()

    def start_new(self) -> _Pipeline | None:
        """A new pipeline if the pool is below its size, else None."""
        with self.lock:
            if self.started >= self.size:
                return None
            self.started += 1
        try:
            return _Pipeline(self.mode_file)
        except Exception:
            with self.lock:
                self.started -= 1
            raise

    def acquire(self, timeout: float) -> _Pipeline:
        try:
            return self.idle.get_nowait()
        except queue.Empty:
            pass
        return self.start_new() or self.idle.get(timeout=timeout)

    def release(self, pipe: _Pipeline, healthy: bool) -> None:
        if healthy and pipe.alive():
            self.idle.put(pipe)
            return
        pipe.close()
        with self.lock:
            self.started -= 1

    def close(self) -> None:
        while True:
            try:
                self.idle.get_nowait().close()
            except queue.Empty:
                return


class ApertiumTranslator:
    """Apertium engine; pairs are discovered from the installed modes (eng-spa, eng-cat, ...)."""

    def __init__(
        self,
        *,
        modes_dirs: Iterable[str] = DEFAULT_MODES_DIRS,
        variants: dict[str, str] | None = None,
        pipelines_per_pair: int = 2,
        timeout: float = 10.0,
        persistent: bool = True,
        preload: bool | Iterable[tuple[str, str]] = (("en", "es"), ("en", "ca")),
    ) -> None:
        """``variants`` maps ``"en-ca"`` to a mode such as ``"eng-cat_valencia"``."""
        if shutil.which("apertium") is None:
            raise TranslationError("apertium not found: install the Debian package 'apertium'")
        self.name = "apertium"
        self.timeout = timeout
        self.persistent = persistent and shutil.which("apertium-wblank-mode") is not None
        modes = discover_modes(modes_dirs)
        self._modes: dict[tuple[str, str], tuple[str, Path]] = {}
        for mode, path in modes.items():
            src, _, tgt = mode.partition("-")
            if src in APERTIUM_TO_ISO1 and tgt in APERTIUM_TO_ISO1:  # skips variants like cat_valencia
                self._modes[(APERTIUM_TO_ISO1[src], APERTIUM_TO_ISO1[tgt])] = (mode, path)
        for key, mode in (variants or {}).items():
            src, _, tgt = key.partition("-")
            if mode not in modes:
                raise TranslationError(f"apertium mode {mode!r} is not installed")
            self._modes[(src, tgt)] = (mode, modes[mode])
        self._pools = {
            pair: _Pool(path, max(1, pipelines_per_pair)) for pair, (_, path) in self._modes.items()
        }
        if preload and self.persistent:
            wanted = self._modes.keys() if preload is True else [tuple(p) for p in preload]
            self._preload([p for p in wanted if p in self._modes])

    def _preload(self, pairs: list[tuple[str, str]]) -> None:
        """Start every pipeline of these pairs now, in parallel, so no live call pays ~0.4 s."""
        started = []
        for pair in pairs:
            pool = self._pools[pair]
            for _ in range(pool.size):
                try:
                    pipe = pool.start_new()
                except Exception:  # translate() will fall back to one-shot apertium
                    break
                if pipe is not None:
                    started.append((pool, pipe))
        threads = [threading.Thread(target=_warm, args=(*job, self.timeout), daemon=True) for job in started]
        for th in threads:
            th.start()
        for th in threads:
            th.join(self.timeout)

    def pairs(self) -> set[tuple[str, str]]:
        return set(self._modes)

    def mode(self, source: str, target: str) -> str:
        try:
            return self._modes[(source, target)][0]
        except KeyError:
            raise TranslationError(
                f"apertium has no {source}->{target} pair installed "
                f"(installed: {', '.join(sorted(f'{s}->{t}' for s, t in self._modes))})"
            ) from None

    def translate(self, text: str, source: str, target: str) -> str:
        mode = self.mode(source, target)
        text = text.replace("\0", " ").strip()
        if not text:
            return ""
        if self.persistent:
            out = self._translate_warm((source, target), text)
            if out is not None:
                return _clean(out)
        return _clean(self._translate_once(mode, text))

    def _translate_warm(self, pair: tuple[str, str], text: str) -> str | None:
        pool = self._pools[pair]
        try:
            pipe = pool.acquire(self.timeout)
        except Exception:
            return None
        healthy = False
        try:
            out = pipe.run(text, self.timeout)
            healthy = True
            return out
        except (OSError, TimeoutError, EOFError, ValueError):
            return None
        finally:
            pool.release(pipe, healthy)

    def _translate_once(self, mode: str, text: str) -> str:
        try:
            proc = subprocess.run(
                ["apertium", "-u", mode],
                input=text.encode("utf-8"),
                capture_output=True,
                timeout=self.timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise TranslationError(f"apertium {mode} timed out after {self.timeout}s") from exc
        if proc.returncode != 0:
            raise TranslationError(
                f"apertium {mode} failed: {proc.stderr.decode('utf-8', 'replace').strip()}"
            )
        return proc.stdout.decode("utf-8", "replace")

    def close(self) -> None:
        """Stop the warm pipelines (they also exit on their own when this process does)."""
        for pool in self._pools.values():
            pool.close()

    def __enter__(self) -> ApertiumTranslator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _warm(pool: _Pool, pipe: _Pipeline, timeout: float) -> None:
    ok = False
    try:
        pipe.run("Hello.", timeout)
        ok = True
    except (OSError, TimeoutError, EOFError, ValueError):
        pass
    finally:
        pool.release(pipe, ok)


def _clean(out: str) -> str:
    """Drop leftover generation marks (#, @, *) and normalise whitespace."""
    return " ".join(_GEN_MARK.sub("", out).split())

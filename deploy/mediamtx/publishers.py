#!/usr/bin/env python3
"""MediaMTX users for the compose deployment: one per broadcaster, and media-service's (standard library only).

Why: one shared `publisher` account lets any broadcaster publish (or, with an override, take over)
any other broadcaster's stream. Here each broadcaster gets its own user that may publish exactly
one input, `live/<name>/in`, and nothing else; media-service has its own user too (password
MEDIAMTX_MEDIA_PASS), so nothing is authorised by a container address.

Why a rendered file: MediaMTX's MTX_AUTHINTERNALUSERS_<i>_* environment overrides mean different
things in different releases (up to 1.15 each index is appended as a new user, from 1.16 on it
changes entry <i>), so the users go into a configuration file, which every release reads the same.
`render` writes deploy/mediamtx/mediamtx.rendered.yml: the template mediamtx.yml with the
media-service password and the broadcasters filled in as sha256 hashes (MediaMTX `sha256:`
credentials). No password is stored in clear: the broadcasters' store (publishers.env, 0600,
git-ignored) keeps `name=sha256:...` lines, and `add` prints the password once.

    python3 deploy/mediamtx/publishers.py add studio-a     # prints the OBS server and stream key
    python3 deploy/mediamtx/publishers.py list
    python3 deploy/mediamtx/publishers.py remove studio-a
    python3 deploy/mediamtx/publishers.py render            # after changing MEDIAMTX_MEDIA_PASS

MEDIAMTX_MEDIA_PASS is read from the environment, else from the .env file beside
docker-compose.yml. Restart mediamtx (`docker compose up -d mediamtx`) after a change.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import secrets
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "mediamtx.yml"
DEFAULT_FILE = HERE / "publishers.env"
DEFAULT_OUT = HERE / "mediamtx.rendered.yml"
DEFAULT_ENV_FILE = HERE.parent.parent / ".env"
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
RESERVED = ("any", "media-service")  # MediaMTX's anonymous user, and media-service's own
PASSWORD = re.compile(r"[A-Za-z0-9._~-]{16,128}")  # URL-safe: it travels in the rtmp:// query
HASHED = re.compile(r"sha256:[A-Za-z0-9+/]{43}=")
MEDIA_PASS_VAR = "MEDIAMTX_MEDIA_PASS"
MEDIA_SERVICE_MARK = "sha256:@render:media-service@"
PUBLISHERS_MARK = "  # @render:publishers@\n"
LEGACY_PREFIX = "MTX_AUTHINTERNALUSERS"  # the store's format before users were rendered into a file


class UsageError(Exception):
    """Something the operator must fix; the message says what."""


def credential(password: str) -> str:
    """MediaMTX's `sha256:` form of a password (base64 of its SHA-256)."""
    return "sha256:" + base64.b64encode(hashlib.sha256(password.encode()).digest()).decode()


def read(path: Path) -> dict[str, str]:
    """name -> sha256 credential, in file order. A store in the older format (environment overrides
    holding clear passwords) is read too; the next write replaces it with hashes."""
    if not path.exists():
        return {}
    values = dict(line.split("=", 1) for line in path.read_text().splitlines()
                  if line and not line.startswith("#") and "=" in line)
    legacy = sorted({int(m.group(1)) for k in values if (m := re.fullmatch(rf"{LEGACY_PREFIX}_(\d+)_USER", k))})
    if legacy:
        return {values[f"{LEGACY_PREFIX}_{i}_USER"]: credential(values.get(f"{LEGACY_PREFIX}_{i}_PASS", ""))
                for i in legacy}
    users = {}
    for name, value in values.items():
        if not NAME.fullmatch(name) or name in RESERVED or not HASHED.fullmatch(value):
            raise UsageError(f"{path}: unexpected line for {name!r} (expected <name>=sha256:<base64>)")
        users[name] = value
    return users


def write(path: Path, users: dict[str, str]) -> None:
    lines = ["# MediaMTX broadcasters (deploy/mediamtx/publishers.py): name=sha256 of the password.",
             "# Each may publish its own input live/<name>/in and nothing else."]
    lines += [f"{name}={cred}" for name, cred in users.items()]
    _write_atomic(path, "\n".join(lines) + "\n", 0o600)


def _write_atomic(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def media_password(environ: dict[str, str], env_file: Path) -> str:
    """MEDIAMTX_MEDIA_PASS from the environment, else from compose's .env file."""
    value = environ.get(MEDIA_PASS_VAR)
    if value is None and env_file.exists():
        for line in env_file.read_text().splitlines():
            key, sep, rest = line.partition("=")
            if sep and key.strip() == MEDIA_PASS_VAR:
                value = rest.strip().strip("'\"")
    if not value:
        raise UsageError(f"{MEDIA_PASS_VAR} is not set (in the environment or {env_file}): set it first "
                         "(e.g. openssl rand -hex 24), it is media-service's MediaMTX password")
    if not PASSWORD.fullmatch(value):
        raise UsageError(f"{MEDIA_PASS_VAR} must be 16-128 characters of A-Z a-z 0-9 . _ ~ - (it travels in "
                         "rtmp:// query strings)")
    return value


def render(template: str, media_credential: str, publishers: dict[str, str]) -> str:
    """The MediaMTX configuration: `template` with media-service's credential and one user per
    broadcaster (name -> sha256 credential) filled in."""
    for mark in (MEDIA_SERVICE_MARK, PUBLISHERS_MARK):
        if template.count(mark) != 1:
            raise UsageError(f"the template must hold {mark.strip()!r} exactly once")
    entries = "".join(
        f"  - user: {name}\n"
        f"    pass: \"{cred}\"\n"
        f"    ips: []\n"
        f"    permissions:\n"
        f"      - action: publish\n"
        f"        path: live/{name}/in\n" for name, cred in publishers.items())
    text = template.replace(MEDIA_SERVICE_MARK, media_credential).replace(PUBLISHERS_MARK, entries)
    return "# Rendered by deploy/mediamtx/publishers.py from mediamtx.yml: edit that, then run `render`.\n" + text


def write_config(out: Path, template: Path, media_credential: str, publishers: dict[str, str]) -> None:
    # Readable by whatever user MediaMTX runs as in its container; it holds hashes, no password.
    _write_atomic(out, render(template.read_text(), media_credential, publishers), 0o644)


def main(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> int:
    environ = dict(os.environ if environ is None else environ)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--file", type=Path, default=Path(environ.get("MEDIAMTX_PUBLISHERS_FILE", DEFAULT_FILE)),
                   help="the broadcasters' store (default: deploy/mediamtx/publishers.env)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="the rendered MediaMTX configuration (default: deploy/mediamtx/mediamtx.rendered.yml)")
    p.add_argument("--template", type=Path, default=TEMPLATE, help=argparse.SUPPRESS)
    p.add_argument("--env-file", type=Path, default=DEFAULT_ENV_FILE,
                   help=f"where {MEDIA_PASS_VAR} is read when it is not in the environment (default: .env)")
    p.add_argument("--host", default="<host>", help="host name shown in the printed URLs")
    sub = p.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="add a publisher (a strong password is generated)")
    add.add_argument("name", help="stream name: lowercase letters, digits, - and _ (publishes live/<name>/in)")
    add.add_argument("--password", help="use this password instead (16-128 URL-safe characters)")
    sub.add_parser("list", help="list the publishers")
    rm = sub.add_parser("remove", help="remove a publisher")
    rm.add_argument("name")
    sub.add_parser("render", help="write the MediaMTX configuration again (template or MEDIAMTX_MEDIA_PASS changed)")
    args = p.parse_args(argv)
    try:
        return _run(args, environ)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, environ: dict[str, str]) -> int:
    users = read(args.file)
    if args.command == "list":
        for name in users:
            print(f"{name}\tpublishes live/{name}/in")
        if not users:
            print(f"no publishers in {args.file}; add one with: {sys.argv[0]} add <name>")
        return 0
    media = credential(media_password(environ, args.env_file))
    if args.command == "render":
        write_config(args.out, args.template, media, users)
        print(f"wrote {args.out} ({len(users)} publishers); restart mediamtx to apply (docker compose up -d mediamtx)")
        return 0
    if not NAME.fullmatch(args.name) or args.name in RESERVED:
        raise UsageError(f"{args.name!r} is not a valid name (lowercase letters, digits, - and _, "
                         f"starting with a letter or digit, at most 63; not {' or '.join(RESERVED)})")
    if args.command == "remove":
        if users.pop(args.name, None) is None:
            print(f"error: no publisher {args.name!r} in {args.file}", file=sys.stderr)
            return 1
        write(args.file, users)
        write_config(args.out, args.template, media, users)
        print(f"removed {args.name}; restart mediamtx to apply (docker compose up -d mediamtx)")
        return 0
    if args.name in users:
        print(f"error: publisher {args.name!r} exists; remove it first to change its password", file=sys.stderr)
        return 1
    password = args.password or secrets.token_hex(24)
    if not PASSWORD.fullmatch(password):
        raise UsageError("the password must be 16-128 characters of A-Z a-z 0-9 . _ ~ -")
    users[args.name] = credential(password)
    write(args.file, users)
    write_config(args.out, args.template, media, users)
    print(f"added {args.name} to {args.file} and {args.out}; restart mediamtx to apply (docker compose up -d mediamtx)")
    print("  the password is shown only now (the files keep its hash)")
    print(f"  OBS server:     rtmp://{args.host}:1935")
    print(f"  OBS stream key: live/{args.name}/in?user={args.name}&pass={password}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

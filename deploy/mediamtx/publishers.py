#!/usr/bin/env python3
"""Per-publisher MediaMTX credentials for the compose deployment (standard library only).

Why: one shared `publisher` account lets any broadcaster publish (or, with an override, take over)
any other broadcaster's stream. Here each broadcaster gets its own user that may publish exactly one
input, `live/<name>/in`, and nothing else. The users are MediaMTX `authInternalUsers` entries added
through MediaMTX's environment overrides (`MTX_AUTHINTERNALUSERS_<i>_...`, appended after the
entries of mediamtx.yml), kept in an env file that docker compose hands to the mediamtx container.
The file holds secrets: it is created mode 0600 and ignored by git.

    python3 deploy/mediamtx/publishers.py add studio-a        # prints the OBS server and stream key
    python3 deploy/mediamtx/publishers.py list
    python3 deploy/mediamtx/publishers.py remove studio-a

Restart mediamtx (`docker compose up -d mediamtx`) after a change.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "mediamtx.yml"
DEFAULT_FILE = HERE / "publishers.env"
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
PASSWORD = re.compile(r"[A-Za-z0-9._~-]{16,128}")  # URL-safe: it travels in the rtmp:// query
PREFIX = "MTX_AUTHINTERNALUSERS"


def first_index(config: Path = CONFIG) -> int:
    """Publishers follow the users that mediamtx.yml lists itself (MediaMTX appends env entries
    only right after the last one, without gaps)."""
    block = config.read_text().split("authInternalUsers:", 1)[1]
    block = re.split(r"^\S", block, maxsplit=1, flags=re.M)[0]  # up to the next top-level key
    return len(re.findall(r"^  - user:", block, flags=re.M))


def read(path: Path) -> dict[str, str]:
    """name -> password, in file order."""
    if not path.exists():
        return {}
    values = dict(line.split("=", 1) for line in path.read_text().splitlines()
                  if line and not line.startswith("#") and "=" in line)
    users = {}
    keys = sorted({int(m.group(1)) for k in values if (m := re.fullmatch(rf"{PREFIX}_(\d+)_USER", k))})
    for i in keys:
        users[values[f"{PREFIX}_{i}_USER"]] = values.get(f"{PREFIX}_{i}_PASS", "")
    return users


def render(users: dict[str, str], start: int) -> str:
    lines = ["# MediaMTX publishers (deploy/mediamtx/publishers.py). Secrets: never commit this file.",
             "# Each user may publish its own input live/<name>/in and nothing else."]
    for i, (name, password) in enumerate(users.items(), start):
        lines += [f"{PREFIX}_{i}_USER={name}", f"{PREFIX}_{i}_PASS={password}",
                  f"{PREFIX}_{i}_PERMISSIONS_0_ACTION=publish", f"{PREFIX}_{i}_PERMISSIONS_0_PATH=live/{name}/in"]
    return "\n".join(lines) + "\n"


def write(path: Path, users: dict[str, str], start: int) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(render(users, start))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--file", type=Path, default=Path(os.environ.get("MEDIAMTX_PUBLISHERS_FILE", DEFAULT_FILE)),
                   help="the env file compose reads (default: deploy/mediamtx/publishers.env)")
    p.add_argument("--host", default="<host>", help="host name shown in the printed URLs")
    sub = p.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="add a publisher (a strong password is generated)")
    add.add_argument("name", help="stream name: lowercase letters, digits, - and _ (publishes live/<name>/in)")
    add.add_argument("--password", help="use this password instead (16-128 URL-safe characters)")
    sub.add_parser("list", help="list the publishers")
    rm = sub.add_parser("remove", help="remove a publisher")
    rm.add_argument("name")
    args = p.parse_args(argv)

    users, start = read(args.file), first_index()
    if args.command == "list":
        for name in users:
            print(f"{name}\tpublishes live/{name}/in")
        if not users:
            print(f"no publishers in {args.file}; add one with: {sys.argv[0]} add <name>")
        return 0
    if not NAME.fullmatch(args.name):
        print(f"error: {args.name!r} is not a valid name (lowercase letters, digits, - and _, "
              "starting with a letter or digit, at most 63)", file=sys.stderr)
        return 2
    if args.command == "remove":
        if users.pop(args.name, None) is None:
            print(f"error: no publisher {args.name!r} in {args.file}", file=sys.stderr)
            return 1
        write(args.file, users, start)
        print(f"removed {args.name}; restart mediamtx to apply (docker compose up -d mediamtx)")
        return 0
    if args.name in users:
        print(f"error: publisher {args.name!r} exists; remove it first to change its password", file=sys.stderr)
        return 1
    password = args.password or secrets.token_hex(24)
    if not PASSWORD.fullmatch(password):
        print("error: the password must be 16-128 characters of A-Z a-z 0-9 . _ ~ -", file=sys.stderr)
        return 2
    users[args.name] = password
    write(args.file, users, start)
    print(f"added {args.name} to {args.file}; restart mediamtx to apply (docker compose up -d mediamtx)")
    print(f"  OBS server:     rtmp://{args.host}:1935")
    print(f"  OBS stream key: live/{args.name}/in?user={args.name}&pass={password}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

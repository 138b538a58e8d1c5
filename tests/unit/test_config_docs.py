"""The README's configuration tables are the settings' documentation: this fails when they drift.

For each service: every flag of the command line is in its table and every table flag is on the
command line; the environment variable named beside a flag really sets that flag's default; and a
default written as a literal (`8000`, `es`, `duck`) is the one in the code."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from media_service import config as media_config
from sts_service import config as sts_config

README = Path(__file__).resolve().parents[2] / "README.md"
SERVICES = {"sts-service": sts_config, "media-service": media_config}


def table(service: str) -> list[dict[str, str]]:
    """Rows `| flag | env | default | meaning |` under `### <service>` in the Configuration section."""
    text = README.read_text()
    section = text.split(f"### {service}\n", 1)[1].split("\n#", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and (cells[0].startswith("`--") or cells[0] == "—"):
            rows.append({"flag": cells[0].strip("`"), "env": cells[1].strip("`"), "default": cells[2]})
    assert rows, f"no configuration table for {service} in README.md"
    return rows


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings if s.startswith("--") and s != "--help"}


def clean_env(monkeypatch, rows):
    for row in rows:
        if row["env"] != "—":
            monkeypatch.delenv(row["env"], raising=False)


@pytest.mark.parametrize("service", SERVICES)
def test_every_flag_is_documented_and_every_documented_flag_exists(service, monkeypatch):
    rows = table(service)
    clean_env(monkeypatch, rows)
    flags = set(options(SERVICES[service].build_parser()))
    documented = {r["flag"] for r in rows if r["flag"] != "—"}
    assert flags - documented == set(), f"undocumented {service} flags"
    assert documented - flags == set(), f"README documents {service} flags that do not exist"


@pytest.mark.parametrize("service", SERVICES)
def test_each_documented_variable_sets_its_flag(service, monkeypatch):
    rows = table(service)
    clean_env(monkeypatch, rows)
    for row in rows:
        if row["flag"] == "—" or row["env"] == "—":
            continue
        action = options(SERVICES[service].build_parser())[row["flag"]]
        value = "7" if action.type in (int, float) else "on" if isinstance(action, argparse._StoreTrueAction) else "x-7"
        if action.choices:
            value = next(c for c in action.choices if c != action.default)
        monkeypatch.setenv(row["env"], value)
        got = options(SERVICES[service].build_parser())[row["flag"]].default
        monkeypatch.delenv(row["env"])
        if isinstance(action, argparse._StoreTrueAction):
            assert got is False or got is True, row  # boolean variables: see the next check
            monkeypatch.setenv(row["env"], "1")
            assert options(SERVICES[service].build_parser())[row["flag"]].default is True, row
            monkeypatch.delenv(row["env"])
        else:
            assert str(got) == value or got == type(got)(value), f"{row['env']} does not set {row['flag']}: {got!r}"


def literal(doc: str) -> str | None:
    """The default as written when it is one literal: `8000`, `8` s, `duck`; None for prose."""
    m = re.fullmatch(r"`([^`]+)`( s| ms)?", doc)
    return m.group(1) if m else None


def same(code_default, doc: str) -> bool:
    if isinstance(code_default, (tuple, list)):
        code_default = ",".join(code_default)
    if isinstance(code_default, float):
        return float(doc) == code_default
    return str(code_default) == doc


@pytest.mark.parametrize("service", SERVICES)
def test_literal_defaults_match_the_code(service, monkeypatch):
    rows = table(service)
    clean_env(monkeypatch, rows)
    opts = options(SERVICES[service].build_parser())
    checked = 0
    for row in rows:
        doc = literal(row["default"])
        if row["flag"] == "—" or doc is None:
            continue
        assert same(opts[row["flag"]].default, doc), f"{row['flag']}: README says {doc}, code {opts[row['flag']].default!r}"
        checked += 1
    assert checked >= 10, f"only {checked} literal defaults found for {service}: is the table still parsed?"

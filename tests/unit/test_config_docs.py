"""The configuration tables in docs/configuration.md are the settings' documentation: this fails when they drift.

Checked against the settings models (each setting declared once, the command line derived from
it): every setting with a flag or a variable has exactly one row, with that flag and variable;
its default; its description word for word (the --help text is made from the same words); a
range a description states is the one enforced; and each variable really sets its setting.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from livedub_protocol.settings import Settings, build_parser, cli_default, env_values, parse
from media_service.config import MediaConfig
from sts_service.config import StsConfig

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
SERVICES: dict[str, type[Settings]] = {"sts-service": StsConfig, "media-service": MediaConfig}
TOKEN = "Zq7-test-token-4821-xk"
BASE_ENV = {"STS_AUTH_TOKEN": TOKEN}  # enough for either service to start


def table(service: str) -> list[dict[str, str]]:
    """Rows `| flag | env | default | meaning |` under `## <service>`."""
    text = DOCS.read_text()
    section = text.split(f"## {service}\n", 1)[1].split("\n#", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and (cells[0].startswith("`--") or cells[0] == "—"):
            rows.append({"flag": cells[0].strip("`"), "env": cells[1].strip("`"), "default": cells[2],
                         "meaning": cells[3]})
    assert rows, f"no configuration table for {service} in docs/configuration.md"
    return rows


def documented(model: type[Settings]) -> dict[tuple[str, str], str]:
    """(flag or —, env or —) -> field name, for every setting that can be set."""
    keys = {}
    for name in model.model_fields:
        opt = model.option(name)
        if opt["flag"] or opt["env"]:
            keys[(opt["flag"] or "—", opt["env"] or "—")] = name
    return keys


def rows_by_setting(service: str) -> list[tuple[dict[str, str], str]]:
    settings = documented(SERVICES[service])
    return [(row, settings[(row["flag"], row["env"])]) for row in table(service)
            if (row["flag"], row["env"]) in settings]


@pytest.mark.parametrize("service", SERVICES)
def test_every_setting_has_one_row_with_its_flag_and_variable(service):
    keys = [(r["flag"], r["env"]) for r in table(service)]
    assert len(keys) == len(set(keys)), f"{service}: a setting listed twice"
    settings = set(documented(SERVICES[service]))
    assert settings - set(keys) == set(), f"{service} settings missing from docs/configuration.md (or with another flag/env)"
    assert set(keys) - settings == set(), f"docs/configuration.md lists {service} settings that do not exist"


@pytest.mark.parametrize("service", SERVICES)
def test_descriptions_are_the_readme_words(service):
    model = SERVICES[service]
    for row, name in rows_by_setting(service):
        assert row["meaning"] == model.model_fields[name].description, f"{service} {row['flag']} {row['env']}"


def literal(doc: str) -> str | None:
    """The default as written when it is one literal: `8000`, `8` s, `duck`; None for prose."""
    m = re.fullmatch(r"`([^`]+)`( s| ms)?", doc)
    return m.group(1) if m else None


@pytest.mark.parametrize("service", SERVICES)
def test_defaults_match_the_code(service):
    """A default the code states is written as that literal; prose only for computed or empty ones."""
    model, checked = SERVICES[service], 0
    for row, name in rows_by_setting(service):
        field = model.model_fields[name]
        code, doc = cli_default(model, name), literal(row["default"])
        where = f"{service} {row['flag']} {row['env']}: docs/configuration.md says {row['default']!r}, code {code!r}"
        if isinstance(code, bool):
            assert row["default"] == ("on" if code else "off"), where
        elif doc is not None:
            assert (float(doc) == code) if isinstance(code, float) else (str(code) == doc), where
            checked += 1
        else:
            assert field.default_factory is not None or code in (None, ""), where
    assert checked >= 10, f"only {checked} literal defaults found for {service}: is the table still parsed?"


def bounds(field) -> dict[str, float]:
    return {k: getattr(m, k) for m in field.metadata for k in ("ge", "gt", "le", "lt") if hasattr(m, k)}


@pytest.mark.parametrize("service", SERVICES)
def test_ranges_in_descriptions_are_the_enforced_ones(service):
    model = SERVICES[service]
    for name, field in model.model_fields.items():
        b, stated = bounds(field), re.search(r"(-?\d+(?:\.\d+)?)–(-?\d+(?:\.\d+)?)", field.description or "")
        lo, hi = b.get("ge", b.get("gt")), b.get("le", b.get("lt"))
        if lo is not None and hi is not None:
            assert stated, f"{service} {name}: description does not state its range {lo}–{hi}"
        if stated:
            assert (float(stated[1]), float(stated[2])) == (lo, hi), f"{service} {name}: {stated[0]} vs {lo}–{hi}"
        for m in re.finditer(r">= (\d+(?:\.\d+)?)(?![\d.]| [a-z])", field.description or ""):  # not "16 chars"
            assert b.get("ge") == float(m[1]), f"{service} {name}: says >= {m[1]}, enforces {b}"


def sample(model: type[Settings], name: str) -> tuple[str, object]:
    """A variable value for setting `name` other than its default, and what it must become."""
    parser = build_parser(model, environ={})
    action = next((a for a in parser._actions if a.dest == name), None)
    if action is not None and action.choices:
        value = next(c for c in action.choices if c != action.default)
        return value, value
    annotation = str(model.model_fields[name].annotation)
    if "bool" in annotation:
        return "1", True
    if "int" in annotation:
        return "7", 7
    if "float" in annotation:
        return "7.5", 7.5
    if "tuple" in annotation:
        return "ab,cd", "ab,cd"  # split by the model, like the flag's value
    return TOKEN, TOKEN


@pytest.mark.parametrize("service", SERVICES)
def test_each_variable_sets_its_setting(service):
    model = SERVICES[service]
    for (flag, env), name in documented(model).items():
        if env == "—":
            continue
        value, want = sample(model, name)
        assert env_values(model, {env: value}) == {name: want}, env
        if flag != "—":  # the command line's default is the variable, as the flag would give it
            action = {a.dest: a for a in build_parser(model, environ={env: value})._actions}[name]
            assert action.default == want, f"{env} does not set {flag}: {action.default!r}"
        else:  # environment-only: read by parse()
            assert getattr(parse(model, [], {**BASE_ENV, env: value}), name) == want, env
    assert env_values(model, {e: "" for _, e in documented(model)}) == {}, "an empty variable counts as unset"

"""Service settings declared once: the plumbing both services' configs are built on.

A service's config is a pydantic model whose fields are made with ``setting()``: type, default,
range, CLI flag, environment variable and a one-line description in one place. The argparse
parser (each flag's default read from its variable), the env-only values and the start-up error
messages (each naming the flag and variable) are derived from it, so they cannot drift apart,
and the tables of docs/configuration.md are checked against the same fields (tests/unit/test_config_docs.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import types
from collections.abc import Mapping
from enum import Enum
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

TRUE_WORDS = ("1", "true", "yes")  # what a boolean variable (e.g. STS_ASR_PROMPT) accepts as on
_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the flag/variable."""


def setting(default: Any, flag: str | None, env: str | None, description: str, *, secret: bool = False,
            repeat: bool = False, **constraints: Any) -> Any:
    """A config field: `default` (a callable: computed at start, e.g. from the CPU count), its CLI
    `flag` and `env` variable (None: not settable that way; both None: fixed in code), the
    docs/configuration.md description (markdown) and pydantic constraints (ge, le, pattern...). `secret`
    values never appear in messages; a `repeat` flag may be given several times (each adds items
    to a list setting; the variable holds them comma-separated)."""
    extra = {"flag": flag, "env": env, "secret": secret}
    if repeat:
        extra["repeat"] = True
    if callable(default):
        return Field(default_factory=default, description=description, json_schema_extra=extra, **constraints)
    return Field(default, description=description, json_schema_extra=extra, **constraints)


def _split(lower: bool):
    def split(value: Any) -> Any:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, list):  # a repeated flag: each value may itself hold several
            value = [v.strip() for item in value for v in str(item).split(",") if v.strip()]
        return tuple(v.lower() for v in value) if lower else value
    return split


def _log_level(value: str) -> str:
    if not isinstance(logging.getLevelName(value.upper()), int):
        raise ValueError(f"must be a Python log level (DEBUG, INFO, WARNING, ERROR), got {value!r}")
    return value


def comma_list(item: Any = str, *, lower: bool = False) -> Any:
    """A tuple setting given as one comma-separated string ("es, ca" -> ("es", "ca")), each item checked."""
    return Annotated[tuple[item, ...], BeforeValidator(_split(lower))]


HostList = comma_list(lower=True)  # host names compare lowercased
LogLevel = Annotated[str, AfterValidator(_log_level)]


class Settings(BaseModel):
    """Base of a service config: made from keyword arguments, checked at once (ConfigError)."""

    model_config = ConfigDict(extra="forbid")
    PROG: ClassVar[str] = ""
    DESCRIPTION: ClassVar[str] = ""

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(describe(type(self), exc)) from None

    @classmethod
    def option(cls, name: str) -> dict[str, Any]:
        """``{"flag", "env", "secret"}`` of field `name` (all empty for a fixed setting)."""
        extra = cls.model_fields[name].json_schema_extra
        return extra if isinstance(extra, dict) else {"flag": None, "env": None, "secret": False}

    @classmethod
    def label(cls, name: str) -> str:
        """How messages name a setting: ``--port (STS_PORT)``, ``--no-auth``, ``MEDIA_API_TOKEN``."""
        opt = cls.option(name)
        if opt["flag"] and opt["env"]:
            return f"{opt['flag']} ({opt['env']})"
        return opt["flag"] or opt["env"] or name


def _bounds(field) -> str | None:
    """A range as messages say it ("within 1..60", "> 0 and <= 1") from ge/gt/le/lt."""
    c = {k: getattr(m, k) for m in field.metadata for k in ("ge", "gt", "le", "lt") if hasattr(m, k)}
    if "ge" in c and "le" in c:
        return f"within {c['ge']:g}..{c['le']:g}"
    parts = [f"{op} {c[k]:g}" for k, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")) if k in c]
    return " and ".join(parts) or None


def _message(model: type[Settings], err: Any) -> str:
    loc, ctx_error = err.get("loc") or (), (err.get("ctx") or {}).get("error")
    if not loc:  # a cross-field check: its message names the flags itself
        return str(ctx_error) if ctx_error is not None else err["msg"]
    name = str(loc[0])
    if name not in model.model_fields:
        return f"{name}: {err['msg'].lower()}"
    label, secret = model.label(name), model.option(name)["secret"]
    if err["type"] == "value_error" and ctx_error is not None:  # our own check: its text shows the value
        return f"{label} {ctx_error}"
    got = "" if secret else f", got {err['input']!r}"
    if err["type"] in _RANGE_ERRORS and (bounds := _bounds(model.model_fields[name])):
        return f"{label} must be {bounds}{got}"
    return f"{label}: {err['msg'][0].lower()}{err['msg'][1:]}{got}"


def describe(model: type[Settings], exc: ValidationError) -> str:
    """One line naming every bad setting by flag and variable."""
    return "; ".join(_message(model, err) for err in exc.errors())


def _plain(description: str) -> str:
    """The --help text of a markdown description: no backticks, links as their text, % escaped."""
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", description).replace("`", "")
    return text.replace("%", "%%")


def _kind(field) -> tuple[Any, list[str] | None]:
    """(argparse type, or "bool" for a switch; choices) of a field's annotation."""
    ann = field.annotation
    if get_origin(ann) in (Union, types.UnionType):
        args = [a for a in get_args(ann) if a is not type(None)]
        ann = args[0] if len(args) == 1 else str
    if ann in (bool, int, float):
        return ("bool" if ann is bool else ann), None
    if get_origin(ann) is Literal:
        return None, [str(a) for a in get_args(ann)]
    if isinstance(ann, type) and issubclass(ann, Enum):
        return None, [str(m.value) for m in ann]
    return None, None  # strings, and lists given as one comma-separated string


def _from_env(model: type[Settings], name: str, raw: str) -> Any:
    kind, _ = _kind(model.model_fields[name])
    if kind == "bool":
        return raw in TRUE_WORDS
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            raise ConfigError(f"{model.label(name)}: invalid {kind.__name__} value {raw!r}") from None
    return raw


def env_values(model: type[Settings], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The settings whose variable is set (an empty variable counts as unset), converted."""
    environ = os.environ if environ is None else environ
    values = {}
    for name in model.model_fields:
        env = model.option(name)["env"]
        if env and environ.get(env, "") != "":
            values[name] = _from_env(model, name, environ[env])
    return values


def cli_default(model: type[Settings], name: str) -> Any:
    """A setting's default as the command line holds it: lists comma-joined, enums as values."""
    value = model.model_fields[name].get_default(call_default_factory=True)
    if isinstance(value, tuple):
        return ",".join(value)
    return value.value if isinstance(value, Enum) else value


class _Repeat(argparse.Action):
    """A flag that may be repeated: the first use replaces the default (the variable), later ones add."""

    def __call__(self, parser, namespace, values, option_string=None):
        current = getattr(namespace, self.dest, None)
        items = [] if current is self.default or current is None else list(current)
        setattr(namespace, self.dest, [*items, values])


class _Parser(argparse.ArgumentParser):
    """Errors as one line naming the flag and variable, like every other configuration error."""

    labels: dict[str, str] = {}

    def error(self, message: str):
        m = re.match(r"argument (--[\w-]+): (.*)", message, re.S)
        raise ConfigError(f"{self.labels.get(m[1], m[1])}: {m[2]}" if m else message)


def build_parser(model: type[Settings], environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The command line of `model`: one flag per setting that has one, its default from its
    variable when set (read now), dest = the field name."""
    from_env = env_values(model, environ)
    parser = _Parser(prog=model.PROG, description=model.DESCRIPTION)
    parser.labels = {model.option(n)["flag"]: model.label(n) for n in model.model_fields}
    for name, field in model.model_fields.items():
        opt = model.option(name)
        if not opt["flag"]:
            continue
        kind, choices = _kind(field)
        default = from_env[name] if name in from_env else cli_default(model, name)
        text = _plain(field.description or "") + (f" (env {opt['env']})" if opt["env"] else "")
        if kind == "bool":
            parser.add_argument(opt["flag"], dest=name, action="store_true", default=default, help=text)
        elif opt.get("repeat"):
            parser.add_argument(opt["flag"], dest=name, action=_Repeat, default=default, help=text)
        else:
            parser.add_argument(opt["flag"], dest=name, type=kind if kind in (int, float) else None,
                                choices=choices, default=default, help=text)
    return parser


def parse(model: type[Settings], argv: list[str] | None = None, environ: Mapping[str, str] | None = None):
    """Command line + environment -> a checked `model`; ConfigError names what is wrong."""
    values = env_values(model, environ)  # env-only settings (tokens); flags below take precedence
    values.update(vars(build_parser(model, environ).parse_args(argv)))
    return model(**values)

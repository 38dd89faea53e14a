"""Field-driven validation of dfnet4's configuration dataclasses.

Every field declares its constraints where it is defined:

    conv_ch: int = param(64, ge=1)
    lr: float = param(5e-4, gt=0)
    compile: bool | str = param("auto", choices=("auto",))

and `validate(obj)` checks every field of a dataclass (nested dataclasses included) against its
type annotation and rule: the type (bool is not an int; an integral float such as TOML's 2.0 is
taken as 2; an int is taken as a float), finiteness of every float, ranges, multiples, odd sizes,
allowed strings, list and pair shapes, and a field-specific `check`. Values are normalised in place
(int -> float, list -> tuple). The first failure raises ConfigError naming the field's dotted key
(`train.lr`, `model.conv_ch`); the command lines turn keys into the flags the user typed.

Because the rules travel with the fields, moving fields into other (nested) dataclasses keeps them
checked. Constraints between fields (divisibility by a group count, fft_size == 2 * hop_size) stay
in each class's `validate()`, which raises ConfigError for the field to blame.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable

# MLX array dimensions are 32-bit: larger sizes would fail deep inside MLX, not here.
INT_LIMIT = 2**31 - 1


class ConfigError(ValueError):
    """A configuration value that is not allowed: `key` (dotted) and what is wrong with it."""

    def __init__(self, key: str, problem: str, context: str = ""):
        self.key, self.problem, self.context = key, problem, context
        super().__init__(f"{context}: {key}: {problem}" if context else f"{key}: {problem}")

    def relabel(self, label: str) -> "ConfigError":
        """The same error under another name for the key (e.g. the flag that set it)."""
        err = ConfigError(self.key, self.problem)
        err.args = (f"{label}: {self.problem}",)
        return err

    def under(self, prefix: str) -> "ConfigError":
        return ConfigError(prefix + self.key, self.problem)


@dataclass(frozen=True)
class Rule:
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    multiple_of: int | None = None
    odd: bool = False
    choices: tuple | None = None  # the strings a str (or str-union) field accepts
    nonempty: bool = True  # lists
    check: Callable[[Any], str | None] | None = None  # returns what is wrong, or None

    def bounds(self) -> str:
        parts = []
        if self.gt is not None:
            parts.append(f"> {self.gt:g}")
        if self.ge is not None:
            parts.append(f">= {self.ge:g}")
        if self.lt is not None:
            parts.append(f"< {self.lt:g}")
        if self.le is not None:
            parts.append(f"<= {self.le:g}")
        if self.multiple_of:
            parts.append(f"a multiple of {self.multiple_of}")
        if self.odd:
            parts.append("odd")
        return " and ".join(parts)

    def scalar_problem(self, v) -> bool:
        return ((self.ge is not None and v < self.ge) or (self.gt is not None and v <= self.gt)
                or (self.le is not None and v > self.le) or (self.lt is not None and v >= self.lt)
                or (self.multiple_of is not None and v % self.multiple_of != 0) or (self.odd and v % 2 == 0))


NO_RULE = Rule()


def param(default=dataclasses.MISSING, *, default_factory=dataclasses.MISSING, **rule):
    """A dataclass field carrying its validation Rule."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"rule": Rule(**rule)})


def rule_of(f: dataclasses.Field) -> Rule:
    return f.metadata.get("rule", NO_RULE)


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict:
    return typing.get_type_hints(cls)


class _Mismatch(Exception):
    """The value is not of the annotated type; str() says what is needed."""


def _describe(hint, rule: Rule) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return "true or false"
    if hint is int:
        return "an integer" + (f" {rule.bounds()}" if rule.bounds() else "")
    if hint is float:
        return "a finite number" + (f" {rule.bounds()}" if rule.bounds() else "")
    if hint is str:
        if not rule.choices:
            return "a string"
        return ("one of " if len(rule.choices) > 1 else "") + ", ".join(repr(c) for c in rule.choices)
    if origin is tuple:
        return f"a list of {len(args)} integers" + (f" {rule.bounds()}" if rule.bounds() else "")
    if origin is list:
        what = {int: "integers", float: "finite numbers"}.get(args[0], "values")
        return ("a non-empty " if rule.nonempty else "a ") + f"list of {what}" + (
            f" {rule.bounds()}" if rule.bounds() else "")
    if hint is dict or origin is dict:
        return "a table"
    return str(hint)


def _is_union(hint) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _scalar(value, hint, rule: Rule):
    """`value` converted to `hint` (a scalar type), or _Mismatch."""
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if rule.le is None and abs(value) > INT_LIMIT:
                raise _Mismatch(f"an integer of at most {INT_LIMIT}")
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    elif hint is str:
        if isinstance(value, str) and (rule.choices is None or value in rule.choices):
            return value
    elif hint is dict or typing.get_origin(hint) is dict:
        if isinstance(value, dict):
            return value
    raise _Mismatch(_describe(hint, rule))


def _convert(value, hint, rule: Rule):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if _is_union(hint):
        if value is None and type(None) in args:
            return None
        needs = []
        for member in (a for a in args if a is not type(None)):
            try:
                return _convert(value, member, rule)
            except _Mismatch as exc:
                needs.append(str(exc))
        raise _Mismatch(" or ".join(needs) + (" or nothing (leave it out)" if type(None) in args else ""))
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _Mismatch(_describe(hint, rule))
        if origin is tuple and len(value) != len(args) or origin is list and rule.nonempty and not value:
            raise _Mismatch(_describe(hint, rule))
        element = args[0]
        try:
            items = [_scalar(v, element, NO_RULE) for v in value]
        except _Mismatch:
            raise _Mismatch(_describe(hint, rule)) from None
        if any(rule.scalar_problem(v) for v in items):
            raise _Mismatch(_describe(hint, rule))
        return tuple(items) if origin is tuple else items
    out = _scalar(value, hint, rule)
    if hint in (int, float) and rule.scalar_problem(out):
        raise _Mismatch(_describe(hint, rule))
    return out


def check_field(value, hint, rule: Rule, key: str):
    """`value` checked and normalised for a field of type `hint` with `rule`; ConfigError otherwise."""
    try:
        out = _convert(value, hint, rule)
    except _Mismatch as exc:
        raise ConfigError(key, f"got {value!r}, need {exc}") from None
    if rule.check is not None and out is not None:
        problem = rule.check(out)
        if problem:
            raise ConfigError(key, f"got {value!r}, {problem}")
    return out


def validate(obj, where: str = "") -> None:
    """Check and normalise every field of the dataclass `obj` (recursively); raise ConfigError."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            validate(value, f"{where}{f.name}.")
            continue
        new = check_field(value, hints[f.name], rule_of(f), where + f.name)
        if new is not value:
            setattr(obj, f.name, new)


def require(ok: bool, key: str, value, need: str) -> None:
    """A constraint between fields: ConfigError for `key` unless `ok`."""
    if not ok:
        raise ConfigError(key, f"got {value!r}, need {need}")

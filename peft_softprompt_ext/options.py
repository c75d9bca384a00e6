"""The fixed sets of words configs take, as `str` enums: saved JSON stays readable ("auto"), and a
typo is an error naming the allowed values. Method-specific sets live with their method
(`Mixing`, `VocabSampling`, `ProjectionFit`, `RowNorm`) and use `parse_option` too. Also the two
number tests config checks share (`is_integer`, `is_finite_number`): JSON and YAML give booleans
where a count is meant, and Python counts them as integers."""

from __future__ import annotations

import enum
import math


class Option(str, enum.Enum):
    """A word from a fixed set: compares, prints and saves as its value ("auto", not SharedPrefix.AUTO)."""

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return repr(self.value)

    __format__ = str.__format__


class SharedPrefix(Option):
    """Causal LMs: run the prompt once per batch and reuse its keys/values (see shared_prefix.py)."""

    AUTO = "auto"  # wherever that is exact, else the standard path
    ON = "on"  # raise where it is not exact
    OFF = "off"  # always feed [prompt; input] per row


class Reparameterization(Option):
    """How a prompt is parameterised while training (saved collapsed either way)."""

    RESIDUAL_MLP = "residual_mlp"  # prompt + MLP(prompt) (Residual Prompt Tuning)
    LAYER_SCALED = "layer_scaled"  # deep prompts: each layer's keys and values trained relative to their starting size


def parse_option(enum_class: type[enum.Enum], value, field: str, allow_none: bool = False):
    """`value` as a member of `enum_class` (its value or the member itself); anything else is an error
    naming `field`, the value and the allowed values."""
    if value is None and allow_none:
        return None
    allowed = [member.value for member in enum_class]
    if isinstance(value, enum_class):
        return value
    if isinstance(value, str) and value in allowed:
        return enum_class(value)
    expected = ([None] if allow_none else []) + allowed
    raise ValueError(f"{field}={value!r} is not one of {expected}.")


def is_integer(value) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value) -> bool:
    """An int or float, not a bool, neither NaN nor infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_shared_prefix(value) -> SharedPrefix:
    """`shared_prefix` as a SharedPrefix; True / False mean "on" / "off"."""
    if value is True or value is False:
        return SharedPrefix.ON if value else SharedPrefix.OFF
    return parse_option(SharedPrefix, value, "shared_prefix")


def check_revision(name: str, value) -> None:
    """A config's Hub revision of its sources: None or a non-empty string (a branch, tag or commit id)."""
    if value is not None and not (isinstance(value, str) and value):
        raise ValueError(f"{name} must be None or a Hub revision (a branch, tag or commit id), got {value!r}.")

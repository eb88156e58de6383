"""The base of every settings block: a typed model that refuses unknown keys and suggests the right one.

Each settings block of the loop (``initial``, ``exploration``, ``trust``, ``selection``,
``convergence``, ``training``, ...) is one subclass of :class:`Settings` with its defaults. The work
chain's input validator, the CalcJobs and the engine executables all read a block through
``Block.from_mapping(values)``, so the three cannot disagree on a key, a default or a bound.

No AiiDA import: the engine executables on compute nodes use these models too.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Mapping
from typing import Any, ClassVar

import pydantic

__all__ = ("Settings", "SettingsError", "suggest")


class SettingsError(ValueError):
    """A settings block has an unknown key, a missing one, or a value out of range.

    The message names the block and the key (``trust.lo``), says what is wrong and, for a typo,
    which key was probably meant.
    """


def suggest(word: str, choices) -> str:
    """Return ``"; did you mean `x`?"`` for the closest of ``choices`` to ``word``, or ``""``."""
    matches = difflib.get_close_matches(str(word), [str(choice) for choice in choices], n=1, cutoff=0.6)
    return f"; did you mean `{matches[0]}`?" if matches else ""


def _location(prefix: str, loc: tuple) -> str:
    parts = [prefix] if prefix else []
    parts += [str(part) for part in loc]
    return ".".join(parts) or "<settings>"


def _field_names(model: type[pydantic.BaseModel], loc: tuple) -> list[str]:
    """The field names of the (nested) model at ``loc``, for typo suggestions."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):  # an index into a list of blocks (``exploration.schedule.0``)
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            break
        models = [
            candidate
            for candidate in (field.annotation, *typing.get_args(field.annotation))
            if isinstance(candidate, type) and issubclass(candidate, pydantic.BaseModel)
        ]
        if not models:
            break
        current = models[0]
    return list(getattr(current, "model_fields", {}))


class Settings(pydantic.BaseModel):
    """A settings block: typed fields with defaults; unknown keys are errors.

    Subclasses set ``block`` (the name users write in a protocol or overrides file, e.g.
    ``"trust"``), used in error messages.
    """

    model_config = pydantic.ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    block: ClassVar[str] = ""

    @classmethod
    def from_node(cls, node=None):
        """Build the block from an ``orm.Dict`` input (anything with ``get_dict``); ``None``: every default."""
        return cls.from_mapping(node.get_dict() if node is not None else None)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None = None, where: str | None = None, **extra):
        """Build the block from a mapping (a protocol entry, an overrides file, a JSON input file).

        Parameters
        ----------
        values
            The keys the user gave; missing keys take their defaults.
        where
            Prefix of the key names in error messages; the class's ``block`` by default.
        extra
            Keys that override ``values``.

        Raises
        ------
        SettingsError
            One line per problem: unknown key (with the nearest valid one), wrong type, value out
            of range, missing required key.
        """
        prefix = cls.block if where is None else where
        if values is None:
            values = {}
        if not isinstance(values, Mapping):
            raise SettingsError(
                f"`{prefix or cls.__name__}` must be a mapping of keys to values, got {type(values).__name__}"
            )
        merged = {**values, **extra}
        try:
            return cls.model_validate(merged)
        except pydantic.ValidationError as exception:
            raise SettingsError(cls._explain(exception, prefix)) from None

    @classmethod
    def _explain(cls, exception: pydantic.ValidationError, prefix: str) -> str:
        lines = []
        for error in exception.errors():
            loc = tuple(error.get("loc", ()))
            name = _location(prefix, loc)
            if error["type"] == "extra_forbidden":
                choices = _field_names(cls, loc[:-1])
                lines.append(f"unknown key `{name}`{suggest(loc[-1], choices) if loc else ''}")
            elif error["type"] == "missing":
                lines.append(f"missing key `{name}`")
            else:
                message = error.get("msg", "invalid value")
                message = message.removeprefix("Value error, ")
                lines.append(f"`{name}`: {message} (got {error.get('input')!r})")
        return "; ".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The block as plain JSON-able values (what goes into an ``orm.Dict`` or a JSON input file)."""
        return self.model_dump(mode="json")


def settings_refusal(model: type[Settings], node) -> str | None:
    """What a port validator returns for a settings ``orm.Dict``: ``None`` if ``model`` accepts it, else why not."""
    if node is None:
        return None
    try:
        model.from_node(node)
    except SettingsError as exception:
        return f"invalid settings: {exception}"
    return None

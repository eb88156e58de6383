"""Protocols: named sets of default inputs for a work chain, kept in YAML beside the work chains.

A protocol file ``protocols/<name>.yaml`` holds::

    default_protocol: balanced
    default_inputs:          # shared by every protocol
      ...
    protocols:
      fast:
        description: ...
        ...                  # merged over default_inputs
      balanced: {...}

``get_protocol_inputs(protocol, overrides)`` returns the default inputs, with the protocol's values
merged over them and the user's overrides merged over that (mappings merge key by key; any other
value replaces). A work chain that sets ``_settings_model`` (a :class:`~aiida_mlip.settings.Settings`
of the whole input set) has the result checked by it, so an unknown key in the overrides is refused
there, with the nearest valid key, instead of being merged in and ignored.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from importlib import resources
from typing import Any, ClassVar

import yaml

__all__ = ("ProtocolMixin", "load_protocol_file", "recursive_merge")


def recursive_merge(base: dict, update: dict) -> dict:
    """Return ``base`` with ``update`` merged in, key by key for nested mappings (no input is modified)."""
    merged = copy.deepcopy(base)
    for key, value in (update or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = recursive_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@functools.cache
def load_protocol_file(filename: str) -> dict:
    """The YAML file ``protocols/<filename>`` beside the work chains, read once (do not modify the result)."""
    text = resources.files("aiida_mlip.workflows").joinpath("protocols", filename).read_text()
    return yaml.safe_load(text)


class ProtocolMixin:
    """Give a work chain ``get_available_protocols``, ``get_default_protocol`` and ``get_protocol_inputs``."""

    _protocol_file: str = ""
    #: The model that checks the merged inputs (``from_mapping`` raising ``SettingsError``), or None.
    _settings_model: ClassVar[Any] = None

    @classmethod
    def _protocols(cls) -> dict:
        return load_protocol_file(cls._protocol_file)

    @classmethod
    def get_default_protocol(cls) -> str:
        return cls._protocols()["default_protocol"]

    @classmethod
    def get_available_protocols(cls) -> dict[str, str]:
        """Return the protocol names with their descriptions."""
        return {name: spec.get("description", "") for name, spec in cls._protocols()["protocols"].items()}

    @classmethod
    def get_protocol_inputs(cls, protocol: str | None = None, overrides: dict | None = None) -> dict:
        """Return the inputs of ``protocol`` (the default one when ``None``) with ``overrides`` merged in.

        Raises
        ------
        ValueError
            For an unknown protocol name, overrides that are not a mapping, or (with a
            ``_settings_model``) merged inputs that the model refuses (``SettingsError``).
        """
        from aiida_mlip.settings import SettingsError

        if overrides is not None and not isinstance(overrides, Mapping):
            raise SettingsError(
                "the overrides must be a mapping of settings blocks (e.g. {'trust': {'lo': 0.1}}), "
                f"got a {type(overrides).__name__}"
            )
        data = cls._protocols()
        protocol = protocol or data["default_protocol"]
        if protocol not in data["protocols"]:
            raise ValueError(f"unknown protocol {protocol!r}; available: {sorted(data['protocols'])}")
        specific = {key: value for key, value in data["protocols"][protocol].items() if key != "description"}
        inputs = recursive_merge(recursive_merge(data.get("default_inputs", {}), specific), overrides or {})
        if cls._settings_model is not None:
            cls._settings_model.from_mapping(inputs)
        return inputs

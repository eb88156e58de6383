"""The settings base: unknown keys refused with a suggestion, values checked, one line per problem."""

import pydantic
import pytest

from aiida_mlip.settings import Settings, SettingsError


class Window(Settings):
    block = "trust"
    lo: float = 0.05
    hi: float = 0.35

    @pydantic.model_validator(mode="after")
    def _ordered(self):
        if not 0 <= self.lo < self.hi:
            raise ValueError(f"needs 0 <= lo < hi, got lo={self.lo}, hi={self.hi}")
        return self


class Outer(Settings):
    trust: Window = Window()
    budget: int = pydantic.Field(10, ge=1)


def test_defaults_and_values():
    assert Window.from_mapping({}).to_dict() == {"lo": 0.05, "hi": 0.35}
    assert Window.from_mapping({"hi": 1.0}).hi == 1.0


def test_unknown_key_suggests_the_nearest():
    with pytest.raises(SettingsError, match=r"unknown key `trust.low`; did you mean `lo`\?"):
        Window.from_mapping({"low": 0.1})
    with pytest.raises(SettingsError, match=r"unknown key `trsut`; did you mean `trust`\?"):
        Outer.from_mapping({"trsut": {}}, where="")


def test_range_and_type_errors_name_the_key():
    with pytest.raises(SettingsError, match=r"`trust`: needs 0 <= lo < hi"):
        Window.from_mapping({"lo": 0.5, "hi": 0.1})
    with pytest.raises(SettingsError, match=r"`budget`: .*greater than or equal to 1 \(got 0\)"):
        Outer.from_mapping({"budget": 0}, where="")
    with pytest.raises(SettingsError, match="must be a mapping"):
        Window.from_mapping([1, 2])

"""Exploration parameters are validated before anything runs."""

import pytest

from aiida_mlip.exploration.parameters import ExploreParameters


def test_defaults_and_ramps():
    parameters = ExploreParameters.from_mapping({"temperature": [300, 2000], "steps": 100, "timestep_fs": 2})
    assert parameters.temperature == (300.0, 2000.0)
    assert parameters.temperature_at(0) == 300.0
    assert parameters.temperature_at(50) == pytest.approx(1150.0)
    assert parameters.temperature_at(100) == 2000.0
    assert parameters.break_threshold == 2 * parameters.trust.hi  # BREAK_FACTOR times the window's hi
    assert parameters.write_interval == parameters.check_interval
    npt = ExploreParameters(ensemble="NPT", pressure=[0.0, 2.0], steps=10)
    assert npt.ensemble == "npt" and npt.pressure_at(5) == pytest.approx(1.0)
    assert ExploreParameters.from_mapping(npt.as_dict()) == npt


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"temperature": -10}, "non-negative"),
        ({"temperature": [300, -1]}, "non-negative"),
        ({"temperature": "hot"}, "number or"),
        ({"trust": {"lo": 0.3, "hi": 0.1}}, "the trust window needs lo < hi"),
        ({"trust": {"lo": 0.2, "hi": 0.2}}, "the trust window needs lo < hi"),
        ({"trust_lo": 0.05}, "unknown key `exploration.md.trust_lo`"),
        ({"ensemble": "nph"}, "unknown ensemble"),
        ({"ensemble": "nve", "temperature": [300, 600]}, "needs a thermostat"),
        ({"pressure": 1.0}, "only used by ensemble npt"),
        ({"steps": 0}, "positive integer"),
        ({"steps": 2.5}, "positive integer"),
        ({"check_interval": 10, "write_interval": 15}, "multiple"),
        ({"timestep": 0}, "positive"),
        ({"break_threshold": 0.01, "trust": {"lo": 0.05}}, "break_threshold"),
        ({"gamma_lo": 5, "gamma_hi": 2}, "gamma window"),
        ({"temprature": 300}, "unknown key `exploration.md.temprature`; did you mean `temperature`"),
    ],
)
def test_bad_parameters_are_refused(values, message):
    with pytest.raises(ValueError, match=message):
        ExploreParameters.from_mapping(values)

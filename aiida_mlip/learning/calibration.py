"""Calibration of the committee force deviation against the force error it is meant to predict.

Each iteration's new labels are frames the previous committee never saw, so before retraining each
gives one honest pair per frame: the committee's *predicted* error, the largest per-atom force
deviation ``max_i eps_i`` (:func:`aiida_mlip.selection.deviation.force_deviation`), and the
*observed* error, the largest per-atom distance between the committee mean force and the reference
force, ``max_i |<F_i> - F_i^ref|`` (both eV/Angstrom).

A committee spread is a ranking of errors, not an error: members trained on the same data agree
more with each other than with the truth, so the spread is usually too small. Musil et al.
(J. Chem. Theory Comput. 15, 906 (2019)) correct it with a single scaling factor fitted on
held-out data. For the per-frame maxima a single factor is not enough: near equilibrium the error
has a floor (noise of the fit the members share) that the spread does not see, so the observed
error falls more slowly than the deviation. Measured on the demo (EMT aluminium), a factor fitted
on selected frames (deviations 0.05-0.5 eV/Angstrom) under-predicted the errors of near-equilibrium
MD frames (deviations 0.007-0.08 eV/Angstrom) by a median factor of 2.2. The calibration is
therefore a power law in the deviation, fitted in log space because the errors span decades:

    observed ~ factor * pivot * (predicted / pivot) ** exponent

``pivot`` (eV/Angstrom) is the geometric mean of the fitted deviations, so ``factor`` stays
dimensionless: the calibrated error over the raw deviation at the centre of the data (exponent 1 is
Musil's scaling factor). ``exponent`` is the Theil-Sen slope of ``log(observed)`` on
``log(predicted)`` (the median of pairwise slopes, robust to the few frames where the committee is
badly wrong), bounded to [``EXPONENT_BOUNDS``]; then ``log(factor * pivot)`` is the median of
``log(observed) - exponent * log(predicted / pivot)``, so half of the frames lie above the
calibrated prediction and half below. The slope is only trusted on pairs that span a range of
deviations: with fewer than ``2 * min_pairs`` pairs, or deviations spanning less than a factor
``MIN_SPAN`` (90th over 10th percentile), the exponent is 1 (a pure scaling factor). Pairs from
several iterations (each frame predicted by the committee that existed before it was labelled) are
pooled for the fit (:meth:`CalibrationPairs.concatenate`), which widens the span. Where an element
is the site of the largest error for at least ``min_pairs`` frames it gets its own factor (same
exponent).

How well the deviation *ranks* the errors is reported as Spearman's rank correlation, and how well
the calibrated value predicts them as the fraction of frames within a factor of 2.

No AiiDA import: the work chain, the AiiDA-free loop and the benchmarks call this module.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from aiida_mlip.plotting import in_default_style
from aiida_mlip.selection.deviation import force_deviation

__all__ = (
    "EXPONENT_BOUNDS",
    "MIN_SPAN",
    "DEFAULT_HI_RATIO",
    "DEFAULT_MIN_PAIRS",
    "Calibration",
    "CalibrationPairs",
    "CalibrationWarning",
    "calibration_pairs",
    "fit_calibration",
    "fit_with_validation",
    "validation_pairs",
    "plot_reliability",
)

DEFAULT_MIN_PAIRS = 10
"""Fewer pairs than this and the fit falls back to ``factor = 1`` (the raw deviation) with a warning."""

EXPONENT_BOUNDS = (0.3, 1.0)
"""Range of the fitted exponent: below 0.3 the deviation would barely matter; above 1 the error
would fall faster than the deviation towards zero, against the floor the members' shared fit error
sets (see above). On the demo's AiiDA-free loop (seeds 0-6) one fit of 1.10 under-predicted the
held-out near-equilibrium errors by a median factor 1.96 (53 % within a factor 2; 67 % capped at 1)."""

MIN_SPAN = 2.0
"""Least ratio of the 90th to the 10th percentile of the deviations for an exponent fit.

On the demo the pooled pairs of four iterations spanned a ratio of 2.5 (0.12-0.31 eV/Angstrom); their
exponent (0.54) predicted held-out frames at 0.01-0.09 eV/Angstrom within a factor 2 for 93% of
them, a pure factor for 47%."""

DEFAULT_HI_RATIO = 5.0
"""``hi / lo`` of the window :meth:`Calibration.window_for` derives from a target error."""


class CalibrationWarning(UserWarning):
    """Too few pairs for a calibration: the raw deviation (factor 1) is used instead."""


@dataclass(frozen=True)
class CalibrationPairs:
    """Predicted and observed per-frame maximum force errors of a committee on labelled frames.

    Attributes
    ----------
    predicted : (n,) array
        ``max_i eps_i``, the largest per-atom committee force deviation of each frame, eV/Angstrom.
    observed : (n,) array
        ``max_i |<F_i> - F_i^ref|``, the largest per-atom error of the committee mean force, eV/Angstrom.
    symbols : tuple of str
        Chemical symbol of the atom where each frame's observed error is largest.
    """

    predicted: np.ndarray
    observed: np.ndarray
    symbols: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        predicted = np.asarray(self.predicted, dtype=np.float64).reshape(-1)
        observed = np.asarray(self.observed, dtype=np.float64).reshape(-1)
        symbols = tuple(str(symbol) for symbol in self.symbols) or ("",) * len(predicted)
        if not (len(predicted) == len(observed) == len(symbols)):
            raise ValueError(
                f"calibration pairs need as many predicted ({len(predicted)}), observed ({len(observed)}) "
                f"and symbol ({len(symbols)}) entries"
            )
        object.__setattr__(self, "predicted", predicted)
        object.__setattr__(self, "observed", observed)
        object.__setattr__(self, "symbols", symbols)

    def __len__(self) -> int:
        return len(self.predicted)

    @classmethod
    def concatenate(cls, parts: Sequence[CalibrationPairs]) -> CalibrationPairs:
        """Pool the pairs of several iterations (the same committee lineage)."""
        parts = list(parts)
        if not parts:
            return cls(np.zeros(0), np.zeros(0), ())
        return cls(
            np.concatenate([part.predicted for part in parts]),
            np.concatenate([part.observed for part in parts]),
            tuple(symbol for part in parts for symbol in part.symbols),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain lists (eV/Angstrom), for an ``orm.Dict`` or a JSON file."""
        return {
            "predicted": self.predicted.tolist(),
            "observed": self.observed.tolist(),
            "symbols": list(self.symbols),
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> CalibrationPairs:
        """Inverse of :meth:`to_dict`."""
        return cls(values["predicted"], values["observed"], tuple(values.get("symbols", ())))


def _reference_forces(image: Atoms, index: int) -> np.ndarray:
    results = image.calc.results if image.calc is not None else {}
    forces = results.get("forces")
    if forces is None:
        raise ValueError(f"frame {index} has no reference forces (label it before calibrating)")
    forces = np.asarray(forces, dtype=np.float64)
    if forces.shape != (len(image), 3):
        raise ValueError(
            f"reference forces of frame {index} have shape {forces.shape}, expected ({len(image)}, 3)"
        )
    return forces


def calibration_pairs(calculator, images: Sequence[Atoms]) -> CalibrationPairs:
    """Predicted and observed maximum force errors of a committee on labelled frames.

    Parameters
    ----------
    calculator
        A committee calculator whose results hold ``committee_forces`` (K, N, 3) in eV/Angstrom on
        every call, e.g. :class:`~aiida_mlip.potentials.calculator.CommitteeCalculator` with
        ``spread_every=1``.
    images
        Labelled frames the committee has not been trained on; each one's calculator results hold
        the reference ``forces`` (eV/Angstrom), as a ``SinglePointCalculator`` from a labeller or
        from :meth:`~aiida_mlip.potentials.frames.Frames.to_atoms` does. They are not modified.

    Returns
    -------
    CalibrationPairs

    Raises
    ------
    ValueError
        If a frame has no reference forces or the calculator gives no committee forces.
    """
    if hasattr(images, "to_atoms"):
        images = images.to_atoms()
    predicted, observed, symbols = [], [], []
    for index, image in enumerate(images):
        reference = _reference_forces(image, index)
        atoms = image.copy()
        atoms.calc = None
        calculator.calculate(atoms, ["energy", "forces"])
        committee = calculator.results.get("committee_forces")
        if committee is None:
            raise ValueError(
                "the calculator gave no committee forces; use a committee calculator that evaluates "
                "the spread on every call (spread_every=1)"
            )
        committee = np.asarray(committee, dtype=np.float64)
        error = np.linalg.norm(committee.mean(axis=0) - reference, axis=1)
        worst = int(np.argmax(error))
        predicted.append(float(force_deviation(committee).max()))
        observed.append(float(error[worst]))
        symbols.append(image.get_chemical_symbols()[worst])
    return CalibrationPairs(np.asarray(predicted), np.asarray(observed), tuple(symbols))


def _usable(pairs: CalibrationPairs) -> np.ndarray:
    """Pairs with both errors finite and positive (a log ratio exists)."""
    return (
        np.isfinite(pairs.predicted)
        & np.isfinite(pairs.observed)
        & (pairs.predicted > 0)
        & (pairs.observed > 0)
    )


def _intercept(log_predicted: np.ndarray, log_observed: np.ndarray, exponent: float) -> float:
    """Median of ``log(observed) - exponent * log(predicted / pivot)``: half the frames lie above."""
    return float(np.median(log_observed - exponent * log_predicted))


def _exponent(log_predicted: np.ndarray, log_observed: np.ndarray, min_pairs: int) -> float:
    """Theil-Sen slope of log observed on log predicted (bounded), or 1 when the data cannot tell."""
    if len(log_predicted) < 2 * min_pairs:
        return 1.0
    low, high = np.percentile(log_predicted, [10, 90])
    if high - low < math.log(MIN_SPAN):
        return 1.0
    from scipy.stats import theilslopes

    slope = float(theilslopes(log_observed, log_predicted).slope)
    return float(np.clip(slope, *EXPONENT_BOUNDS)) if math.isfinite(slope) else 1.0


def _spearman(predicted: np.ndarray, observed: np.ndarray) -> float | None:
    """Spearman's rank correlation, or None with fewer than 3 pairs or a constant input."""
    if len(predicted) < 3 or np.ptp(predicted) == 0 or np.ptp(observed) == 0:
        return None
    from scipy.stats import spearmanr

    return float(spearmanr(predicted, observed).statistic)


@dataclass(frozen=True)
class Calibration:
    """``observed ~ factor * pivot * (predicted / pivot) ** exponent``, per element where fitted.

    Attributes
    ----------
    factor : float
        Dimensionless: calibrated error over raw deviation at ``pivot``; 1 for a fallback.
    per_element : dict
        Symbol -> factor, for elements that were the site of the largest error in at least
        ``min_pairs`` frames.
    exponent : float
        Power of the deviation; 1 (a pure scaling factor) for a fallback, for too few pairs or for
        deviations spanning too narrow a range.
    pivot : float
        eV/Angstrom: the deviation at which ``factor`` applies (geometric mean of the fitted ones).
    spearman : float or None
        Rank correlation of predicted and observed errors over the usable pairs.
    n_pairs : int
        Usable pairs (both errors finite and positive).
    fallback : bool
        True when there were fewer than ``min_pairs`` usable pairs: ``factor`` is 1.
    within_factor_2 : float or None
        Fraction of usable pairs whose calibrated prediction is within a factor of 2 of the
        observed error (in-sample).
    log_spread : float or None
        Standard deviation of ``log(observed / (factor * predicted))``, dimensionless.
    min_pairs : int
        The threshold the fit used.
    """

    factor: float = 1.0
    per_element: dict[str, float] = field(default_factory=dict)
    exponent: float = 1.0
    pivot: float = 1.0
    spearman: float | None = None
    n_pairs: int = 0
    fallback: bool = True
    within_factor_2: float | None = None
    log_spread: float | None = None
    min_pairs: int = DEFAULT_MIN_PAIRS

    def factor_for(self, symbol: str | None = None) -> float:
        """The factor of ``symbol`` when it has its own, else the global one."""
        return float(self.per_element.get(symbol, self.factor)) if symbol else float(self.factor)

    def predict(self, deviation, symbol: str | None = None):
        """Calibrated maximum force error (eV/Angstrom) for a max force deviation (eV/Angstrom).

        ``deviation`` may be a float or an array; ``symbol`` picks an element's own factor.
        """
        scale = self.factor_for(symbol) * self.pivot
        if np.ndim(deviation) == 0:
            return scale * (float(deviation) / self.pivot) ** self.exponent
        return scale * (np.asarray(deviation, dtype=np.float64) / self.pivot) ** self.exponent

    def window_for(
        self, target_force_error: float, hi_ratio: float = DEFAULT_HI_RATIO
    ) -> tuple[float, float]:
        """The trust window ``(lo, hi)`` on the max force deviation for a target force error.

        Rule: ``lo`` is the deviation whose calibrated error equals the target, using the largest
        factor of any element (the element the committee is most overconfident about decides),
        ``lo = pivot * (target / (max(factor, per_element factors) * pivot)) ** (1 / exponent)``
        (``target / factor`` for exponent 1); ``hi = hi_ratio * lo``. A frame below
        ``lo`` is then predicted to be within the target; one between ``lo`` and ``hi`` is worth a
        label; one above is predicted ``hi_ratio`` times worse than the target.

        Parameters
        ----------
        target_force_error
            The acceptable maximum force error of a frame, eV/Angstrom; must be positive.
        hi_ratio
            ``hi / lo``, greater than 1.

        Returns
        -------
        (lo, hi) in eV/Angstrom.

        Raises
        ------
        ValueError
            For a target error <= 0 (or not finite) or ``hi_ratio <= 1``.
        """
        target = float(target_force_error)
        if not math.isfinite(target) or target <= 0:
            raise ValueError(
                f"target_force_error must be a positive force error in eV/Angstrom, got {target_force_error!r}"
            )
        if not hi_ratio > 1:
            raise ValueError(f"hi_ratio must be greater than 1, got {hi_ratio!r}")
        scale = max([self.factor, *self.per_element.values()])
        lo = self.pivot * (target / (scale * self.pivot)) ** (1.0 / self.exponent)
        return lo, hi_ratio * lo

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON-able; ``None`` for what could not be computed)."""
        return {
            "factor": float(self.factor),
            "per_element": {symbol: float(value) for symbol, value in self.per_element.items()},
            "exponent": float(self.exponent),
            "pivot": float(self.pivot),
            "spearman": self.spearman,
            "n_pairs": int(self.n_pairs),
            "fallback": bool(self.fallback),
            "within_factor_2": self.within_factor_2,
            "log_spread": self.log_spread,
            "min_pairs": int(self.min_pairs),
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`; unknown keys are errors (missing ``exponent``/``pivot``: 1)."""
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown calibration keys: {sorted(unknown)}")
        values = dict(values)
        values["per_element"] = dict(values.get("per_element") or {})
        return cls(**values)


def fit_calibration(pairs: CalibrationPairs, min_pairs: int = DEFAULT_MIN_PAIRS) -> Calibration:
    """Fit ``observed ~ factor * pivot * (predicted / pivot) ** exponent`` in log space.

    The exponent is the bounded Theil-Sen slope of log observed on log predicted, or 1 with fewer
    than ``2 * min_pairs`` pairs or deviations spanning less than a factor :data:`MIN_SPAN`; the
    factor is the median log residual (see the module docstring); per element where possible.

    Parameters
    ----------
    pairs
        From :func:`calibration_pairs`, on frames the committee was not trained on (pooled over
        iterations with :meth:`CalibrationPairs.concatenate`, each frame predicted by the committee
        before it was labelled).
    min_pairs
        Least number of usable pairs (both errors finite and positive) for a fit, globally and per
        element. With fewer, the result is a fallback: ``factor = 1``, ``exponent = 1`` and a
        :class:`CalibrationWarning`; the rank correlation is still reported when it can be computed.

    Returns
    -------
    Calibration
    """
    if int(min_pairs) < 1:
        raise ValueError(f"min_pairs must be at least 1, got {min_pairs}")
    usable = _usable(pairs)
    predicted, observed = pairs.predicted[usable], pairs.observed[usable]
    symbols = np.asarray(pairs.symbols, dtype=object)[usable]
    n_pairs = int(usable.sum())
    spearman = _spearman(predicted, observed)
    if n_pairs < min_pairs:
        warnings.warn(
            f"only {n_pairs} usable calibration pairs (fewer than {min_pairs}): "
            "using the uncalibrated deviation (factor 1) and the fixed trust window",
            CalibrationWarning,
            stacklevel=2,
        )
        return Calibration(spearman=spearman, n_pairs=n_pairs, fallback=True, min_pairs=int(min_pairs))
    log_pivot = float(np.mean(np.log(predicted)))
    log_predicted = np.log(predicted) - log_pivot
    log_observed = np.log(observed)
    exponent = _exponent(log_predicted, log_observed, int(min_pairs))
    pivot = math.exp(log_pivot)

    def factor_of(chosen) -> float:
        return math.exp(_intercept(log_predicted[chosen], log_observed[chosen], exponent)) / pivot

    per_element = {
        str(symbol): factor_of(symbols == symbol)
        for symbol in sorted(set(symbols))
        if symbol and (symbols == symbol).sum() >= min_pairs
    }
    calibration = Calibration(
        factor=factor_of(np.ones(n_pairs, dtype=bool)),
        per_element=per_element,
        exponent=exponent,
        pivot=pivot,
        min_pairs=int(min_pairs),
    )
    calibrated = np.array(
        [calibration.predict(value, symbol) for value, symbol in zip(predicted, symbols, strict=True)]
    )
    residual = log_observed - np.log(calibrated)
    return Calibration(
        factor=calibration.factor,
        per_element=per_element,
        exponent=exponent,
        pivot=pivot,
        spearman=spearman,
        n_pairs=n_pairs,
        fallback=False,
        within_factor_2=float(np.mean(np.abs(residual) <= math.log(2.0))),
        log_spread=float(residual.std()),
        min_pairs=int(min_pairs),
    )


def validation_pairs(metrics: Mapping[str, Any] | None) -> CalibrationPairs:
    """The calibration pairs of a committee on its own validation split (``metrics["valid_pairs"]``).

    ``metrics`` is what :func:`aiida_mlip.potentials.train.train_committee` returns (and
    ``aiida-mlip-train`` writes): the validation frames are held out from every member, so the trained
    committee never saw them. They span the deviations of the whole dataset, the near-equilibrium
    start frames included, where the new labels of an iteration (all above the trust window's ``lo``)
    do not reach. Empty without metrics or without a validation split.
    """
    values = (metrics or {}).get("valid_pairs")
    return CalibrationPairs.from_dict(values) if values else CalibrationPairs.concatenate([])


def fit_with_validation(
    label_pairs: CalibrationPairs, validation: CalibrationPairs | None = None
) -> tuple[Calibration, CalibrationPairs]:
    """Fit the label pairs of every iteration so far together with the calibrated committee's validation pairs.

    Returns the calibration and the pairs it was fitted on. The fit's fallback warning (fewer than
    the minimum number of pairs) is silenced: ``Calibration.fallback`` says so, and callers report it.
    """
    fitted = CalibrationPairs.concatenate([label_pairs, validation or CalibrationPairs.concatenate([])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        return fit_calibration(fitted), fitted


@in_default_style
def plot_reliability(pairs: CalibrationPairs, calibration: Calibration, path: str | Path) -> Path:
    """Write a reliability diagram (PNG): calibrated predicted vs observed max force error per frame.

    Log-log axes in eV/Angstrom, one colour per element, the diagonal (perfect calibration) and the
    factor-of-2 band; the title gives the factor, the rank correlation and the number of pairs.

    Returns
    -------
    The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    usable = _usable(pairs)
    symbols = np.asarray(pairs.symbols, dtype=object)[usable]
    predicted = np.array(
        [
            calibration.predict(value, symbol)
            for value, symbol in zip(pairs.predicted[usable], symbols, strict=True)
        ]
    )
    observed = pairs.observed[usable]
    figure, axes = plt.subplots(figsize=(4.5, 4.2))
    for symbol in sorted(set(symbols)) or [""]:
        chosen = symbols == symbol
        axes.scatter(predicted[chosen], observed[chosen], s=14, alpha=0.8, label=symbol or "frames")
    values = np.concatenate([predicted, observed]) if len(predicted) else np.array([1e-2, 1.0])
    low, high = values.min() / 1.5, values.max() * 1.5
    line = np.array([low, high])
    axes.plot(line, line, color="black", linewidth=1, label="observed = predicted")
    axes.fill_between(line, line / 2, line * 2, color="grey", alpha=0.2, label="within a factor 2")
    axes.set(
        xscale="log",
        yscale="log",
        xlim=(low, high),
        ylim=(low, high),
        xlabel="calibrated max force deviation (eV/Å)",
        ylabel="observed max force error (eV/Å)",
    )
    rho = "n/a" if calibration.spearman is None else f"{calibration.spearman:.2f}"
    kind = " (fallback)" if calibration.fallback else ""
    axes.set_title(
        f"factor {calibration.factor:.2f}, exponent {calibration.exponent:.2f}{kind}, "
        f"Spearman {rho}, n={calibration.n_pairs}",
        fontsize=9,
    )
    axes.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path

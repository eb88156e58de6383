"""The committee's uncertainty, calibrated against labels it never saw, with provenance.

Each iteration of ``ActiveLearningWorkChain`` labels frames the current committee was not trained
on. Before the committee is retrained on them, :func:`calibrate_uncertainty` compares, per frame,
the committee's predicted max force deviation with its actual max force error on them, fits the
calibration (:mod:`aiida_mlip.learning.calibration`, after Musil et al., J. Chem. Theory Comput.
15, 906 (2019)) and stores the fit, the pairs and a reliability diagram as nodes created by that
calcfunction from the committee and the labels. :func:`trust_window_from` turns the latest fit and
a target force error into the trust window of the next iteration.
"""

from __future__ import annotations

import tempfile
import warnings

from aiida import orm
from aiida.engine import calcfunction

from aiida_mlip.data.dataset import DatasetData
from aiida_mlip.data.potential import PotentialData

__all__ = ("calibrate_uncertainty", "calibration_summary", "trust_window_from")


@calcfunction
def calibrate_uncertainty(potential: PotentialData, labels: DatasetData) -> dict:
    """Calibrate ``potential``'s force deviation on ``labels`` (frames it was not trained on).

    Returns
    -------
    dict
        ``calibration``: ``orm.Dict`` with ``fit`` (``Calibration.to_dict()``: factor,
        per-element factors, Spearman rank correlation, number of pairs, fallback flag) and
        ``pairs`` (per frame: predicted max force deviation and observed max force error,
        eV/Angstrom, and the element of the worst atom); ``reliability_diagram``: PNG.
    """
    from aiida_mlip.learning.calibration import calibration_pairs, fit_calibration, plot_reliability

    calculator = potential.get_calculator(device="cpu", spread_every=1)
    pairs = calibration_pairs(calculator, labels.get_atoms())
    with warnings.catch_warnings():
        # fewer than the minimum number of pairs: the fit says so (`fallback`), the work chain reports it
        warnings.simplefilter("ignore")
        calibration = fit_calibration(pairs)
    with tempfile.TemporaryDirectory() as tmp:
        path = plot_reliability(pairs, calibration, f"{tmp}/reliability.png")
        diagram = orm.SinglefileData(path)
    return {
        "calibration": orm.Dict({"fit": calibration.to_dict(), "pairs": pairs.to_dict()}),
        "reliability_diagram": diagram,
    }


def calibration_summary(calibration: orm.Dict) -> dict:
    """The history's view of a calibration: factor, Spearman rank correlation, pairs, fallback."""
    fit = calibration["fit"]
    return {key: fit.get(key) for key in ("factor", "spearman", "n_pairs", "fallback", "within_factor_2")}


def trust_window_from(
    calibration: orm.Dict, target_force_error: float, break_threshold: float | None = None
) -> tuple[tuple[float, float] | None, str]:
    """The trust window ``(lo, hi)`` (eV/Angstrom) for a target max force error, or None and why not.

    None when the calibration is a fallback (too few pairs) or when the window would start at or
    above the walkers' ``break_threshold`` (no frame could be accurate); the caller then keeps the
    window in use (the fixed one until a calibration sets another). The message says what was
    chosen, for the report.
    """
    from aiida_mlip.learning.calibration import Calibration

    fit = Calibration.from_dict(calibration["fit"])
    if fit.fallback:
        return None, (
            f"only {fit.n_pairs} calibration pair(s) (fewer than {fit.min_pairs}): keeping the trust window in use"
        )
    lo, hi = fit.window_for(target_force_error)
    if break_threshold is not None and lo >= break_threshold:
        return None, (
            f"the window for target {target_force_error:g} eV/A would start at {lo:.3f} eV/A, above the break "
            f"threshold {break_threshold:g} eV/A: keeping the trust window in use"
        )
    return (lo, hi), (
        f"trust window lo={lo:.3f}, hi={hi:.3f} eV/A for target force error {target_force_error:g} eV/A "
        f"(calibration factor {fit.factor:.2f} on {fit.n_pairs} pairs)"
    )

"""The committee's uncertainty, calibrated against labels it never saw, with provenance.

Each iteration of ``ActiveLearningWorkChain`` labels frames the current committee was not trained
on. Before the committee is retrained on them, :func:`calibrate_uncertainty` compares, per frame,
the committee's predicted max force deviation with its actual max force error on them, pools these
pairs with those of the previous calibration (each frame predicted by the committee that existed
before it was labelled), fits the calibration (:mod:`aiida_mlip.learning.calibration`, a power law
extending the scaling factor of Musil et al., J. Chem. Theory Comput. 15, 906 (2019)) and stores
the fit, the pairs and a reliability diagram as nodes created by that calcfunction from the
committee, the labels and the previous calibration. :func:`trust_window_from` turns the latest fit and
a target force error into the trust window of the next iteration.
"""

from __future__ import annotations

import tempfile

from aiida import orm
from aiida.engine import calcfunction

from aiida_mlip.data.dataset import DatasetData
from aiida_mlip.data.potential import PotentialData

__all__ = ("CalibrationMixin", "calibrate_uncertainty", "calibration_summary", "trust_window_from")


@calcfunction
def calibrate_uncertainty(
    potential: PotentialData,
    labels: DatasetData,
    previous: orm.Dict | None = None,
    validation: orm.Dict | None = None,
) -> dict:
    """Calibrate ``potential``'s force deviation on ``labels`` (frames it was not trained on).

    Parameters
    ----------
    potential
        The committee before it is trained on ``labels``.
    labels
        The new labels (reference forces in eV/Angstrom).
    previous
        The ``calibration`` output of the previous iteration, or None: its ``pooled_pairs`` (each
        predicted by the committee before that frame was labelled) join the fit, which then spans
        the deviations of every iteration so far instead of one trust window's.
    validation
        The ``metrics`` of the training that made ``potential``, or None: its ``valid_pairs`` (the
        committee on its own validation split, frames no member was trained on) join the fit, those
        of earlier committees do not. They reach down to the near-equilibrium deviations that new labels, all above the trust window's
        ``lo``, never do; without them the fit extrapolates there.

    Returns
    -------
    dict
        ``calibration``: ``orm.Dict`` with ``fit`` (``Calibration.to_dict()``: factor, exponent,
        pivot, per-element factors, Spearman rank correlation, number of pooled pairs, fallback
        flag), ``pairs`` (this iteration's: per frame the predicted max force deviation and the
        observed max force error, eV/Angstrom, and the element of the worst atom) and
        ``pooled_pairs`` (the previous ones and these, carried to the next iteration) and
        ``validation_pairs`` (those of this committee's validation split; the earlier committees'
        are not carried over); the fit is on the pooled and validation pairs together. ``reliability_diagram``: PNG of the fitted pairs.
    """
    from aiida_mlip.learning.calibration import (
        CalibrationPairs,
        calibration_pairs,
        fit_with_validation,
        plot_reliability,
        validation_pairs,
    )

    calculator = potential.get_calculator(device="cpu", spread_every=1)
    pairs = calibration_pairs(calculator, labels.get_atoms())
    # only this committee's validation pairs: earlier committees' said how *they* erred (pooling them put
    # 80-100 % of the demo's held-out frames within a factor 2 over 5 seeds, this committee's alone 93-100 %)
    checked = validation_pairs(validation.get_dict() if validation is not None else None)
    pooled = pairs
    if previous is not None:
        earlier = previous.get_dict()
        pooled = CalibrationPairs.concatenate(
            [CalibrationPairs.from_dict(earlier.get("pooled_pairs", earlier["pairs"])), pairs]
        )
    # fewer than the minimum number of pairs: the fit says so (`fallback`), the work chain reports it
    calibration, fitted = fit_with_validation(pooled, checked)
    with tempfile.TemporaryDirectory() as tmp:
        path = plot_reliability(fitted, calibration, f"{tmp}/reliability.png")
        diagram = orm.SinglefileData(path)
    return {
        "calibration": orm.Dict(
            {
                "fit": calibration.to_dict(),
                "pairs": pairs.to_dict(),
                "pooled_pairs": pooled.to_dict(),
                "validation_pairs": checked.to_dict(),
            }
        ),
        "reliability_diagram": diagram,
    }


def calibration_summary(calibration: orm.Dict) -> dict:
    """The history's view of a calibration: factor, exponent, Spearman rank correlation, pairs, fallback.

    ``n_pairs`` counts the pairs the fit used, ``n_new_pairs`` this iteration's new labels and
    ``n_validation_pairs`` the committees' validation frames among them.
    """
    fit = calibration["fit"]
    summary = {
        key: fit.get(key)
        for key in ("factor", "exponent", "spearman", "n_pairs", "fallback", "within_factor_2")
    }
    summary["n_new_pairs"] = len(calibration["pairs"]["predicted"])
    summary["n_validation_pairs"] = len(calibration.get("validation_pairs", {}).get("predicted", []))
    return summary


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
        f"(calibration factor {fit.factor:.2f}, exponent {fit.exponent:.2f} on {fit.n_pairs} pairs)"
    )


class CalibrationMixin:
    """The calibration step of ``ActiveLearningWorkChain``: each iteration's new labels calibrate the committee."""

    def _calibrate(self, labels: DatasetData) -> None:
        """Calibrate the current committee on new labels (pooled with the earlier ones and its validation pairs).

        With a target error, the fit sets the next window.
        """
        optional = {"previous": self.ctx.get("calibration"), "validation": self.ctx.get("potential_metrics")}
        outputs = calibrate_uncertainty(
            self.ctx.potential,
            labels,
            **{key: node for key, node in optional.items() if node is not None},
            metadata={"call_link_label": f"calibrate_{self.ctx.iteration}"},
        )
        self.ctx.calibration = outputs["calibration"]
        key = f"iteration_{self.ctx.iteration}"
        self.out(f"calibration.{key}", outputs["calibration"])
        self.out(f"reliability_diagram.{key}", outputs["reliability_diagram"])
        summary = calibration_summary(outputs["calibration"])
        self.ctx.record["calibration"] = summary
        spearman = summary["spearman"]
        self.report(
            f"calibration on {summary['n_new_pairs']} new label(s) ({summary['n_pairs']} pairs with earlier "
            f"labels and {summary['n_validation_pairs']} validation frames): "
            f"factor {summary['factor']:.2f}, exponent {summary['exponent']:.2f}"
            + (" (fallback: too few pairs)" if summary["fallback"] else "")
            + f", rank correlation {'n/a' if spearman is None else f'{spearman:.2f}'}"
        )
        target = self.inputs.trust.get_dict().get("target_force_error")
        if target is None:
            return
        md = self.inputs.exploration.get_dict().get("md", {})
        window, message = trust_window_from(outputs["calibration"], target, md.get("break_threshold"))
        self.report(message)
        if window is not None:
            self.ctx.window = {
                "lo": window[0],
                "hi": window[1],
                "source": f"calibration of iteration {self.ctx.iteration} for target {target:g} eV/A",
            }

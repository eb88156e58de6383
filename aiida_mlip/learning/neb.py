"""Active learning along a reaction path: settings, and which images of an NEB the committee can be trusted on.

A barrier computed with a committee potential is only as good as the potential near the path, and
bulk training sets rarely hold a saddle point. The refinement loop of
:class:`~aiida_mlip.workflows.neb.NebActiveLearningWorkChain` runs the NEB with the committee
(:func:`~aiida_mlip.properties.neb.nudged_elastic_band`), judges every image by the committee's
largest force deviation (the score of the trust window,
:class:`~aiida_mlip.selection.trust.TrustWindow`), labels the images at or above the threshold,
retrains and runs the NEB again, until every image is below it. This is on-the-fly refinement of a
path with committee uncertainty, as in the concurrent-learning scheme of DP-GEN (Zhang et al.,
Comput. Phys. Commun. 253, 107206 (2020)) restricted to the images of one path; see also Schaaf et
al., npj Comput. Mater. 9, 180 (2023) for NEB barriers refined by active learning.

No AiiDA import: the work chain's calcfunction calls :func:`judge_path`.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pydantic

from aiida_mlip.properties.neb import NEBResult, NEBSettings
from aiida_mlip.selection.trust import DEFAULT_LO
from aiida_mlip.settings import Settings

__all__ = ("NebLearningSettings", "judge_path")


class NebLearningSettings(Settings):
    """Settings of the NEB refinement loop (the ``settings`` input of ``NebActiveLearningWorkChain``).

    Attributes
    ----------
    neb
        The NEB kernel's block (:class:`~aiida_mlip.properties.neb.NEBSettings`): ``images`` (at least
        3, end points included), ``climb``, ``fmax`` (eV/Angstrom), ``steps``, ``spring``
        (eV/Angstrom^2), ``relax_endpoints`` (default true: each round relaxes the end points with
        its own committee), ``endpoint_fmax``.
    threshold
        eV/Angstrom: an image is trusted when the committee's largest per-atom force deviation on
        it is below this. Default: the trust window's ``lo`` (0.15 eV/Angstrom, the benchmarked
        boundary below which the active-learning loop counts a frame accurate).
    max_rounds
        Most label-and-retrain rounds; the NEB runs at most ``max_rounds + 1`` times (the last one
        judges the last committee).
    device, dtype
        Of the committee's calculator in the NEB: ``"auto"``/``"cpu"``/``"cuda"``; ``float64`` by
        default (the optimiser's small steps want it).
    """

    neb: NEBSettings = pydantic.Field(default_factory=NEBSettings)
    threshold: float = pydantic.Field(DEFAULT_LO, gt=0, allow_inf_nan=False)
    max_rounds: int = pydantic.Field(3, ge=0)
    device: str = "auto"
    dtype: Literal["float32", "float64"] = "float64"


def judge_path(result: NEBResult, threshold: float) -> dict[str, Any]:
    """The JSON record of one NEB round: barriers with their committee spread, and the untrusted images.

    Parameters
    ----------
    result
        The NEB of a committee calculator (``force_deviation`` and the spreads set).
    threshold
        eV/Angstrom; images whose largest force deviation is at or above it are untrusted.

    Returns
    -------
    dict
        ``barrier``, ``reverse_barrier``, ``barrier_spread``, ``reverse_barrier_spread`` (eV),
        ``energies``, ``spread`` (per image, eV, relative to the initial state), ``max_force_deviation``
        (per image, eV/Angstrom), ``untrusted`` (image indices), ``trusted`` (none untrusted),
        ``threshold``, ``converged`` (the path reached ``fmax``).

    Raises
    ------
    ValueError
        ``result`` has no force deviation (not a committee of at least two members), or a NaN or
        infinite energy or deviation (a path that blew up).
    """
    if result.force_deviation is None:
        raise ValueError("the NEB was not run with a committee of at least two members: no force deviation")
    deviation = np.asarray(result.force_deviation, dtype=float)
    if not (np.isfinite(result.energies).all() and np.isfinite(deviation).all()):
        raise ValueError(
            f"the path has non-finite energies {np.round(result.energies, 4).tolist()} or force deviations "
            f"{np.round(deviation, 4).tolist()}: the committee drove the images apart"
        )
    untrusted = [int(index) for index in np.flatnonzero(deviation >= threshold)]
    return {
        "barrier": float(result.barrier),
        "reverse_barrier": float(result.reverse_barrier),
        "barrier_spread": float(result.barrier_spread),
        "reverse_barrier_spread": float(result.reverse_barrier_spread),
        "energies": [float(value) for value in result.energies],
        "spread": [float(value) for value in result.spread],
        "max_force_deviation": [float(value) for value in deviation],
        "untrusted": untrusted,
        "trusted": not untrusted,
        "threshold": float(threshold),
        "converged": bool(result.converged),
    }

"""Validation of a potential: property kernels per committee member and with a reference, compared quantity by quantity.

A validation runs each asked-for kernel (:mod:`~.eos`, :mod:`~.elastic`, :mod:`~.phonons`, :mod:`~.neb`)
once per committee member (:func:`~.committee.committee_property`: ``mean +- spread``) and, when a
reference calculator is given (e.g. the DFT or EMT that labelled the training set, through ASE),
once with the reference through the same kernel and settings. Every quantity of the table is then
judged by its relative difference ``(mean - reference) / |reference|`` against a relative tolerance
of its property (:class:`Tolerances`); a quantity out of tolerance is a finding of the validation,
not an error.

Which quantities enter the table (the reference's values decide, the committee mean without one):

- ``eos``: ``a0`` (Angstrom, cubic crystals), ``V0`` (Angstrom^3/atom), ``B0`` (GPa), ``B0_prime``.
- ``elastic``: every ``Cij`` (GPa) at least 1% of the largest diagonal one (the entries that vanish
  by symmetry have no relative difference), the Hill moduli ``K_H``, ``G_H`` (GPa) and the mean
  sound speed ``v_m`` (m/s).
- ``phonons``: ``{point}_{branch}`` (THz) at the high-symmetry points, except frequencies under
  0.1 THz in magnitude (the acoustic modes at Gamma).
- ``neb``: ``barrier`` and ``reverse_barrier`` (eV).
- ``cutoff`` (:mod:`~.cutoff`, on labelled frames, all members in one pass; not judged, no reference):
  ``energy_change_<delta>`` (meV/atom) and ``force_change_<delta>`` (meV/Angstrom) per shortening.
- ``minima`` (:mod:`~.minima`, relaxed with the committee mean: no per-member values; not judged):
  ``n_minima``, ``max_force_deviation`` (eV/Angstrom) and, with a reference, ``n_spurious`` and
  ``max_reference_force`` (eV/Angstrom); the spurious minima as labelled frames.

No AiiDA import: :class:`~aiida_mlip.workflows.validation.ValidationWorkChain` records this with
provenance; the same functions run without a profile.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pydantic
from ase import Atoms
from ase.calculators.calculator import Calculator

from aiida_mlip.plotting import in_default_style
from aiida_mlip.potentials.frames import Frames
from aiida_mlip.properties.checks import PropertyInputError, check_endpoints, require_periodic
from aiida_mlip.properties.committee import Estimate, committee_property, member_calculators
from aiida_mlip.properties.cutoff import CutoffSettings, check_shortenings, cutoff_sensitivity
from aiida_mlip.properties.elastic import ElasticSettings, elastic_constants
from aiida_mlip.properties.eos import EOSSettings, equation_of_state
from aiida_mlip.properties.minima import MinimaSettings, spurious_minima
from aiida_mlip.properties.neb import NEBSettings, nudged_elastic_band
from aiida_mlip.properties.phonons import PhononSettings, band_ticks, check_phonon_supercell, phonons
from aiida_mlip.settings import Settings, suggest

__all__ = (
    "KERNELS",
    "PROPERTIES",
    "PropertyValidation",
    "Tolerances",
    "ValidationSettings",
    "check_inputs",
    "format_table",
    "plot_phonon_comparison",
    "summarise",
    "validate_property",
)

#: The properties a validation can compute, in the order they run.
PROPERTIES = ("eos", "elastic", "phonons", "neb", "cutoff", "minima")

#: How each kernel names what it computes, in the messages of the input checks.
_WHAT = {"eos": "an equation of state", "elastic": "elastic constants", "phonons": "phonons"}

#: Frequencies (THz) smaller in magnitude than this have no meaningful relative difference.
PHONON_FLOOR = 0.1
#: Elastic constants smaller than this fraction of the largest diagonal one are left out of the table.
ELASTIC_FLOOR = 0.01


def _tolerance(default: float):
    return pydantic.Field(default, gt=0)


class EOSTolerances(Settings):
    """Relative tolerances of the equation of state (``tolerances.eos``): fractions, 0.005 = 0.5%."""

    block = "tolerances.eos"
    a0: float = _tolerance(0.005)
    V0: float = _tolerance(0.015)
    B0: float = _tolerance(0.10)
    B0_prime: float = _tolerance(0.25)


class ElasticTolerances(Settings):
    """Relative tolerances of ``tolerances.elastic``: ``C`` every Cij, ``K`` and ``G`` the Hill moduli, ``v`` the mean sound speed."""

    block = "tolerances.elastic"
    C: float = _tolerance(0.15)
    K: float = _tolerance(0.15)
    G: float = _tolerance(0.15)
    v: float = _tolerance(0.10)


class PhononTolerances(Settings):
    """Relative tolerance of every phonon frequency at the high-symmetry points (``tolerances.phonons``)."""

    block = "tolerances.phonons"
    frequency: float = _tolerance(0.10)


class NEBTolerances(Settings):
    """Relative tolerance of the forward and reverse barriers (``tolerances.neb``)."""

    block = "tolerances.neb"
    barrier: float = _tolerance(0.10)


class Tolerances(Settings):
    """Relative tolerances per property (block ``tolerances``)."""

    block = "tolerances"
    eos: EOSTolerances = pydantic.Field(default_factory=EOSTolerances)
    elastic: ElasticTolerances = pydantic.Field(default_factory=ElasticTolerances)
    phonons: PhononTolerances = pydantic.Field(default_factory=PhononTolerances)
    neb: NEBTolerances = pydantic.Field(default_factory=NEBTolerances)


class ValidationSettings(Settings):
    """What a validation computes and how it judges it.

    Attributes
    ----------
    properties
        Any of ``eos``, ``elastic``, ``phonons``, ``neb`` (needs a final structure), ``cutoff``
        (needs labelled frames) and ``minima``.
    eos, elastic, phonons, neb, cutoff, minima
        The kernels' own settings blocks (:class:`~.eos.EOSSettings`: ``volume_range``, ``points``;
        :class:`~.elastic.ElasticSettings`: ``strains``, at most 5%; :class:`~.phonons.PhononSettings`:
        ``supercell``, ``displacement`` (Angstrom), ``band_points``, ``mesh``;
        :class:`~.neb.NEBSettings`: ``images``, at least 3, ...; :class:`~.cutoff.CutoffSettings`:
        ``shortenings`` (Angstrom, below the cutoff), ``max_frames``; :class:`~.minima.MinimaSettings`:
        ``rattled``, ``random`` (start structures, at least one), ``rattle`` (Angstrom), ``fmax``
        (eV/Angstrom), ``steps``, ``force_threshold`` (eV/Angstrom), ``seed``).
    tolerances
        :class:`Tolerances`, relative.
    device, dtype
        Of the potential's calculator: ``"auto"``/``"cpu"``/``"cuda"``; ``float64`` by default (finite
        differences of stress and forces want it).
    """

    properties: list[str] = ["eos", "elastic", "phonons"]
    eos: EOSSettings = pydantic.Field(default_factory=EOSSettings)
    elastic: ElasticSettings = pydantic.Field(default_factory=ElasticSettings)
    phonons: PhononSettings = pydantic.Field(default_factory=PhononSettings)
    neb: NEBSettings = pydantic.Field(default_factory=NEBSettings)
    cutoff: CutoffSettings = pydantic.Field(default_factory=CutoffSettings)
    minima: MinimaSettings = pydantic.Field(default_factory=MinimaSettings)
    tolerances: Tolerances = pydantic.Field(default_factory=Tolerances)
    device: str = "auto"
    dtype: Literal["float32", "float64"] = "float64"

    @pydantic.field_validator("properties")
    @classmethod
    def _known_properties(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError(f"give at least one property of {', '.join(PROPERTIES)}")
        for name in value:
            if name not in PROPERTIES:
                raise ValueError(
                    f"unknown property `{name}`{suggest(name, PROPERTIES)} (known: {', '.join(PROPERTIES)})"
                )
        return [name for name in PROPERTIES if name in value]


def check_inputs(
    settings: ValidationSettings,
    atoms: Atoms,
    cutoff: float | None = None,
    elements: Sequence[str] | None = None,
    final: Atoms | None = None,
    backend: str | None = None,
) -> None:
    """Refuse a validation that cannot give a meaningful result, before any energy is computed.

    Parameters
    ----------
    cutoff
        The potential's cutoff, Angstrom: the phonon supercell must be twice as wide, a cutoff
        shortening shorter.
    elements
        The elements the potential knows.
    final
        The final state of the NEB (``atoms`` is the initial one).
    backend
        The potential's model backend (``cutoff`` needs the built-in one).

    Raises
    ------
    PropertyInputError
        An element the potential does not know; a structure not periodic in 3D for ``eos``,
        ``elastic``, ``phonons`` or random ``minima`` starts; a phonon supercell narrower than twice
        the cutoff; ``neb`` without a final structure or with end points of different atoms,
        elements or cells; a cutoff shortening at or above the cutoff, or ``cutoff`` of a MACE committee.
    """
    if elements is not None:
        unknown = sorted(set(atoms.get_chemical_symbols()) - set(elements))
        if unknown:
            raise PropertyInputError(
                f"the structure holds {unknown}, which the potential was not trained on (it knows {sorted(elements)})"
            )
    for name in settings.properties:
        if name in _WHAT:
            require_periodic(atoms, _WHAT[name])
        if name == "phonons":
            check_phonon_supercell(atoms, settings.phonons.supercell, cutoff)
        if name == "neb":
            if final is None:
                raise PropertyInputError("`neb` needs the final state of the path: give a final structure")
            check_endpoints(atoms, final)
        if name == "cutoff":
            check_shortenings(settings.cutoff, cutoff)
            if backend not in (None, "builtin"):
                from aiida_mlip.potentials.shortened import MACE_REFUSAL

                raise PropertyInputError(f"{MACE_REFUSAL} (this potential's backend: {backend})")
        if name == "minima" and settings.minima.random:
            require_periodic(atoms, "random start structures of `minima`")


@dataclass
class PropertyValidation:
    """One property computed with every member and the reference, and its rows of the comparison table.

    Attributes
    ----------
    name
        ``eos``, ``elastic``, ``phonons`` or ``neb``.
    rows
        One mapping per quantity: ``property``, ``quantity``, ``unit``, ``mean``, ``std`` (over
        members, ``ddof=0``), ``members`` (each member's value), ``reference`` (or ``None``),
        ``difference`` (relative, ``(mean - reference) / |reference|``, or ``None``), ``tolerance``
        (relative) and ``within_tolerance`` (``None`` without a reference).
    details
        JSON-able facts that are not table rows (EOS minimum bracketed, imaginary phonon modes,
        NEB convergence and per-image energies).
    members, reference
        The kernel's results (per member; the reference's or ``None``).
    plot
        Phonons: the PNG of the members' and the reference's band structures.
    frames
        Minima: ``minima`` (every converged minimum, unlabelled) and ``spurious_minima`` (labelled
        by the reference), when there are any.
    """

    name: str
    rows: list[dict[str, Any]]
    details: dict[str, Any]
    members: list[Any] = field(repr=False)
    reference: Any = field(default=None, repr=False)
    plot: str | None = None
    frames: dict[str, Frames] = field(default_factory=dict, repr=False)


def _quantities(name: str, basis: dict[str, float], tolerances: Tolerances) -> list[tuple[str, str, float]]:
    """``(quantity, unit, relative tolerance)`` of the table rows of ``name``, chosen on the values ``basis``."""
    if name == "eos":
        tol = tolerances.eos
        rows = [
            ("a0", "Angstrom", tol.a0),
            ("V0", "Angstrom^3/atom", tol.V0),
            ("B0", "GPa", tol.B0),
            ("B0_prime", "", tol.B0_prime),
        ]
        return [row for row in rows if row[0] in basis]
    if name == "elastic":
        tol = tolerances.elastic
        largest = max(abs(basis[f"C{i}{i}"]) for i in range(1, 7))
        constants = [
            (key, "GPa", tol.C)
            for key in basis
            if key.startswith("C") and abs(basis[key]) >= ELASTIC_FLOOR * largest
        ]
        return constants + [("K_H", "GPa", tol.K), ("G_H", "GPa", tol.G), ("v_m", "m/s", tol.v)]
    if name == "phonons":
        return [
            (key, "THz", tolerances.phonons.frequency)
            for key, value in basis.items()
            if key != "min_frequency" and abs(value) >= PHONON_FLOOR
        ]
    if name == "neb":
        return [("barrier", "eV", tolerances.neb.barrier), ("reverse_barrier", "eV", tolerances.neb.barrier)]
    raise ValueError(f"unknown property {name!r}")


def _row(name, quantity, unit, tolerance, estimate, reference) -> dict[str, Any]:
    difference = within = None
    if reference is not None and reference != 0 and tolerance is not None:
        difference = (estimate.mean - reference) / abs(reference)
        # NaN (a member without a value, e.g. the sound speed of an unstable aggregate) is not within
        within = bool(np.isfinite(difference) and abs(difference) <= tolerance)
    return {
        "property": name,
        "quantity": quantity,
        "unit": unit,
        "mean": estimate.mean,
        "std": estimate.spread,
        "members": list(estimate.values),
        "reference": reference,
        "difference": difference,
        "tolerance": tolerance,
        "within_tolerance": within,
    }


#: The kernel of each property.
KERNELS: dict[str, Callable[..., Any]] = {
    "eos": equation_of_state,
    "elastic": elastic_constants,
    "phonons": phonons,
    "neb": nudged_elastic_band,
}


def _details(name: str, members: list, reference) -> dict[str, Any]:
    results = {"members": members} | ({"reference": reference} if reference is not None else {})
    if name == "eos":
        return {f"bracketed_{who}": _each(found, lambda r: r.bracketed) for who, found in results.items()}
    if name == "phonons":
        return {"band_path": members[0].band_path} | {
            f"imaginary_modes_{who}": _each(found, lambda r: len(r.imaginary_modes))
            for who, found in results.items()
        }
    if name == "neb":
        return {f"converged_{who}": _each(found, lambda r: r.converged) for who, found in results.items()} | {
            f"energies_{who}": _each(found, lambda r: r.energies.tolist()) for who, found in results.items()
        }
    return {}


def _each(found, get):
    return [get(result) for result in found] if isinstance(found, list) else get(found)


def validate_property(
    name: str,
    atoms: Atoms,
    committee: Calculator | Sequence[Calculator],
    settings: ValidationSettings | dict | None = None,
    reference: Calculator | None = None,
    final: Atoms | None = None,
    cutoff: float | None = None,
    plot: str | os.PathLike | None = None,
    frames: Frames | None = None,
    reference_result: Any = None,
) -> PropertyValidation:
    """Compute property ``name`` with every committee member and with ``reference``; the table rows.

    Parameters
    ----------
    name
        One of :data:`PROPERTIES`.
    atoms
        The structure (the NEB's initial state, the seed of the ``minima`` starts); not modified.
    committee
        A committee calculator or a sequence of calculators (see :func:`~.committee.member_calculators`).
    settings
        :class:`ValidationSettings` or a mapping of its keys: the kernel's block and the tolerances.
    reference
        An ASE calculator run through the same kernel and settings, or ``None``.
    final
        The NEB's final state.
    cutoff
        The potential's cutoff (Angstrom), for the phonon supercell check of the members.
    plot
        Phonons: write the band structures of the members and the reference here (PNG).
    frames
        ``cutoff``: the labelled frames it is evaluated on (the potential's training set).
    reference_result
        The reference's result of the kernel, computed elsewhere (e.g. an :class:`~.eos.EOSResult`
        of :func:`~.eos.fit_equation_of_state` on pw.x energies); used instead of running ``reference``.

    Raises
    ------
    PropertyInputError
        Bad settings or inputs (see :func:`check_inputs`), before any energy is computed.
    """
    if not isinstance(settings, ValidationSettings):
        settings = ValidationSettings.from_mapping(settings)
    if name not in PROPERTIES:
        raise PropertyInputError(f"unknown property `{name}`{suggest(name, PROPERTIES)}")
    check_inputs(settings.model_copy(update={"properties": [name]}), atoms, cutoff=cutoff, final=final)
    if name == "cutoff":
        return _validate_cutoff(committee, frames, settings)
    if name == "minima":
        return _validate_minima(atoms, committee, settings, reference)
    kernel = KERNELS[name]
    kwargs: dict[str, Any] = {"settings": getattr(settings, name)}
    if name == "neb":
        kwargs["final"] = final
    member_kwargs = dict(kwargs, cutoff=cutoff) if name == "phonons" else kwargs
    computed = committee_property(kernel, atoms, member_calculators(committee), **member_kwargs)
    found = reference_result
    if found is None and reference is not None:
        found = kernel(atoms, calculator=reference, **kwargs)
    reference_values = found.scalars() if found is not None else None
    basis = reference_values or {key: estimate.mean for key, estimate in computed.estimates.items()}
    rows = [
        _row(
            name,
            quantity,
            unit,
            tolerance,
            computed[quantity],
            None if reference_values is None else reference_values.get(quantity),
        )
        for quantity, unit, tolerance in _quantities(name, basis, settings.tolerances)
        if quantity in computed.estimates
    ]
    validation = PropertyValidation(
        name, rows, _details(name, computed.members, found), computed.members, found
    )
    if name == "phonons" and plot is not None:
        validation.plot = plot_phonon_comparison(computed.members, found, plot)
    return validation


def _plain_row(
    name: str, quantity: str, unit: str, value: float, std: float | None = None, members=()
) -> dict:
    """A row of a property that is not judged against a reference (``cutoff``, ``minima``)."""
    estimate = Estimate(value, std, tuple(members))
    return _row(name, quantity, unit, None, estimate, None)


def _validate_cutoff(committee, frames: Frames | None, settings: ValidationSettings) -> PropertyValidation:
    if frames is None:
        raise PropertyInputError("`cutoff` needs labelled frames: give the potential's training set")
    found = cutoff_sensitivity(committee, frames, settings.cutoff)
    rows = [
        _plain_row(
            "cutoff",
            key,
            "meV/atom" if key.startswith("energy") else "meV/Angstrom",
            estimate.mean,
            estimate.spread,
            estimate.values,
        )
        for key, estimate in found.estimates().items()
    ]
    return PropertyValidation("cutoff", rows, found.details(), [found])


#: Units of the ``minima`` rows.
_MINIMA_UNITS = {
    "n_minima": "",
    "n_spurious": "",
    "max_reference_force": "eV/Angstrom",
    "max_force_deviation": "eV/Angstrom",
}


def _validate_minima(atoms: Atoms, committee, settings: ValidationSettings, reference) -> PropertyValidation:
    found = spurious_minima(atoms, committee, settings.minima, reference=reference)
    values = found.scalars()
    rows = [
        _plain_row("minima", key, unit, values[key]) for key, unit in _MINIMA_UNITS.items() if key in values
    ]
    frames = {"minima": found.minima_frames(), "spurious_minima": found.spurious_frames()}
    return PropertyValidation(
        "minima",
        rows,
        found.details(),
        [found],
        found if reference is not None else None,
        frames={key: value for key, value in frames.items() if value is not None},
    )


def summarise(validations: dict[str, dict[str, Any]], reference: str | None = None) -> dict[str, Any]:
    """The comparison of a whole validation, as JSON-able values (what the ``comparison`` output holds).

    Parameters
    ----------
    validations
        ``{property: {"rows": [...], "details": {...}}}`` of the properties that were computed, or
        ``{property: {"error": "..."}}`` for one that failed.
    reference
        What the reference was (e.g. its import path), or ``None``.

    Returns
    -------
    dict
        ``quantities`` (every row, in property order), ``properties`` (``{name: {"status": "ok" |
        "failed", "details" | "error"}}``), ``n_quantities``, ``n_judged`` (rows with a reference),
        ``n_within_tolerance`` and ``reference``.
    """
    rows, properties = [], {}
    for name in PROPERTIES:
        if name not in validations:
            continue
        found = validations[name]
        if "error" in found:
            properties[name] = {"status": "failed", "error": found["error"]}
            continue
        properties[name] = {"status": "ok", "details": found.get("details", {})}
        rows.extend(found["rows"])
    judged = [row for row in rows if row["within_tolerance"] is not None]
    return {
        "quantities": rows,
        "properties": properties,
        "n_quantities": len(rows),
        "n_judged": len(judged),
        "n_within_tolerance": sum(bool(row["within_tolerance"]) for row in judged),
        "reference": reference,
    }


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def format_table(comparison: dict[str, Any]) -> str:
    """The comparison as text: one line per quantity, ``name  mean +- std unit  reference  difference  tolerance  ok``.

    Failed properties follow the table as ``<property>: FAILED: <error>``.
    """
    header = ("quantity", "potential", "reference", "difference", "tolerance", "")
    lines = []
    for row in comparison["quantities"]:
        unit = f" {row['unit']}" if row["unit"] else ""
        verdict = {True: "ok", False: "NOT OK", None: "-"}[row["within_tolerance"]]
        difference = "-" if row["difference"] is None else f"{100 * row['difference']:+.2f}%"
        lines.append(
            (
                f"{row['property']}.{row['quantity']}",
                _number(row["mean"]) + ("" if row["std"] is None else f" +- {_number(row['std'], 2)}") + unit,
                _number(row["reference"]),
                difference,
                "-" if row["tolerance"] is None else f"{100 * row['tolerance']:g}%",
                verdict,
            )
        )
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    text = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [header, *lines]
    ]
    for name, found in comparison["properties"].items():
        if found["status"] != "ok":
            text.append(f"{name}: FAILED: {found['error']}")
    return "\n".join(text)


@in_default_style
def plot_phonon_comparison(members: list, reference=None, path: str | os.PathLike = "phonons.png") -> str:
    """Band structures of the committee members (thin, blue) and the reference (black, dashed) as a PNG; the path.

    The q-points of the band path are the same fractions of every member's reciprocal lattice, so
    every band is drawn against the path distances of the reference (or the first member).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    axis = reference if reference is not None else members[0]
    figure = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(figure)
    bands = figure.subplots()
    curves = [(member, {"color": "C0", "linewidth": 0.8, "alpha": 0.6}) for member in members]
    if reference is not None:
        curves.append((reference, {"color": "k", "linewidth": 1.2, "linestyle": "--"}))
    for number, (result, style) in enumerate(curves):
        label = "reference" if result is reference else ("committee members" if number == 0 else None)
        for k, (distances, frequencies) in enumerate(
            zip(axis.band_distances, result.band_frequencies, strict=True)
        ):
            lines = bands.plot(distances, frequencies, **style)
            if k == 0 and label is not None:  # one legend entry per curve kind, not per branch
                lines[0].set_label(label)
    ticks, names = band_ticks(axis.band_path, axis.band_distances)
    for tick in ticks:
        bands.axvline(tick, color="0.7", linewidth=0.5)
    bands.axhline(0, color="0.3", linewidth=0.5)
    bands.set_xlim(ticks[0], ticks[-1])
    bands.set_xticks(ticks, names)
    bands.set_ylabel("frequency (THz); < 0: imaginary")
    bands.legend(loc="lower right", fontsize="small")
    figure.savefig(path, dpi=120, bbox_inches="tight")
    return str(path)

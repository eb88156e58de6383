"""Property-level convergence: the run converges only once the properties people compute have settled.

The ``convergence.properties`` block names quantities of the validation table
(:mod:`aiida_mlip.properties.validation`: ``eos.B0``, ``elastic.C44``, ``phonons.X_3``, ...) with two
relative tolerances each::

    convergence:
      properties:
        structure: 0                  # index of the run's start structures
        quantities:
          eos.B0: {change: 0.05, spread: 0.10}
          phonons.X_3: {change: 0.05, spread: 0.10}
        phonons: {supercell: [3, 3, 3]}   # the kernels' own blocks (eos, elastic, phonons), optional

After each iteration's training the properties the names ask for are computed with every member of
the new committee. A quantity is within tolerance when

* its **change** ``|mean - previous| / |previous|`` is at most ``change``, where ``previous`` is the
  committee mean of the last *different* committee (an iteration that trained nothing carries the
  last values over unchanged, it is no new evidence), and
* its **spread** ``std / |mean|`` (the committee's standard deviation over its members, relative)
  is at most ``spread``.

The first committee judged has no previous value, so the first iteration never converges on
properties.

**Probes.** Exploration by MD at the start structure's volume rarely meets a frame whose *forces*
the committee disagrees on while its members still disagree on the curvature of E(V) or on a
phonon branch, so the force-deviation selection alone can leave a property's spread high with
nothing left to label (measured on EMT Al: B0's spread stayed at 30-45 % over 7 iterations, exit
407). With ``probes`` (default on), a property whose quantity has a spread above its tolerance has
its own structures labelled in the next iteration, once (:func:`property_probes`: the volume
points of the EOS, the strained cells of the elastic constants, the displaced supercells of the
phonons, all of the start structure as given), so the committee learns exactly what the property
asks of it. :func:`judge_quantity` is the one place that judges a quantity; the history record
(:func:`aiida_mlip.history.property_fields`) and :func:`aiida_mlip.learning.convergence.decide`
both call it. No AiiDA import.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic
from ase import Atoms

from aiida_mlip.properties.elastic import ElasticSettings
from aiida_mlip.properties.eos import EOSSettings
from aiida_mlip.properties.phonons import PhononSettings
from aiida_mlip.settings import Settings, SettingsError, suggest

__all__ = (
    "PropertyConvergenceSettings",
    "QuantityTolerance",
    "judge_quantity",
    "probes_due",
    "property_probes",
    "quantity_text",
)

#: The properties whose quantities a run can converge on (NEB needs a final state: not here).
CONVERGENCE_PROPERTIES = ("eos", "elastic", "phonons")

#: The quantities of each property's validation rows (phonons: ``{point}_{branch}``, checked apart).
_QUANTITIES = {
    "eos": ("a0", "V0", "B0", "B0_prime"),
    "elastic": tuple(f"C{i}{j}" for i in range(1, 7) for j in range(i, 7)) + ("K_H", "G_H", "v_m"),
}
_PHONON = re.compile(r"^(?P<point>[A-Z][A-Za-z0-9]*)_(?P<branch>[1-9][0-9]*)$")


class QuantityTolerance(Settings):
    """The tolerances of one quantity: both relative, fractions (0.05 = 5%), > 0.

    Attributes
    ----------
    change
        Largest ``|mean - previous| / |previous|`` between the committee means of two successive
        committees.
    spread
        Largest ``std / |mean|``, the committee's standard deviation over its members.
    """

    block = "convergence.properties.quantities"

    change: float = pydantic.Field(gt=0)
    spread: float = pydantic.Field(gt=0)


def _check_name(name: str) -> None:
    """Refuse a quantity name that no validation row can carry (the structure is not known here)."""
    known = ", ".join(CONVERGENCE_PROPERTIES)
    if "." not in name:
        raise ValueError(
            f"`{name}` is not `<property>.<quantity>` (e.g. `eos.B0`, `phonons.X_3`; properties: {known})"
        )
    prop, quantity = name.split(".", 1)
    if prop == "neb":
        raise ValueError(
            f"`{name}`: a NEB needs a final state, which a run does not have (properties: {known})"
        )
    if prop not in CONVERGENCE_PROPERTIES:
        raise ValueError(
            f"`{name}`: unknown property `{prop}`{suggest(prop, CONVERGENCE_PROPERTIES)} ({known})"
        )
    if prop == "phonons":
        found = _PHONON.match(quantity)
        if found is None:
            raise ValueError(
                f"`{name}`: a phonon quantity is `<point>_<branch>`, the branch counted from 1 in "
                "ascending frequency (e.g. `phonons.X_3`)"
            )
        if found["point"] == "G" and int(found["branch"]) <= 3:
            raise ValueError(f"`{name}` is an acoustic zero at Gamma: it has no relative change or spread")
        return
    if quantity not in _QUANTITIES[prop]:
        raise ValueError(
            f"unknown quantity `{name}`{suggest(name, [f'{prop}.{known}' for known in _QUANTITIES[prop]])} "
            f"({prop}: {', '.join(_QUANTITIES[prop])})"
        )


class PropertyConvergenceSettings(Settings):
    """The ``convergence.properties`` block (see the module docstring).

    Attributes
    ----------
    structure
        Index of the run's start structures to compute the properties on (>= 0).
    quantities
        ``{"<property>.<quantity>": {change, spread}}``: rows of the validation table
        (:mod:`aiida_mlip.properties.validation`); the properties to compute follow from the names.
    eos, elastic, phonons
        The kernels' settings blocks (:class:`~aiida_mlip.properties.eos.EOSSettings`,
        :class:`~aiida_mlip.properties.elastic.ElasticSettings`,
        :class:`~aiida_mlip.properties.phonons.PhononSettings`); the phonon supercell must be at
        least twice the potential's cutoff wide.
    probes
        When a quantity's committee spread is above its tolerance, label the structures its
        property is computed on (:func:`property_probes`) in the next iteration, once per property.
    """

    block = "convergence.properties"

    structure: int = pydantic.Field(0, ge=0)
    quantities: dict[str, QuantityTolerance]
    eos: EOSSettings = pydantic.Field(default_factory=EOSSettings)
    elastic: ElasticSettings = pydantic.Field(default_factory=ElasticSettings)
    phonons: PhononSettings = pydantic.Field(default_factory=PhononSettings)
    probes: bool = True

    @pydantic.field_validator("quantities", mode="before")
    @classmethod
    def _known_quantities(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            if not value:
                raise ValueError("give at least one quantity, e.g. `eos.B0: {change: 0.05, spread: 0.1}`")
            for name in value:
                _check_name(str(name))
        return value

    @property
    def properties(self) -> list[str]:
        """The properties the quantities need, in the order the validation layer runs them."""
        wanted = {name.split(".", 1)[0] for name in self.quantities}
        return [name for name in CONVERGENCE_PROPERTIES if name in wanted]

    def validation_settings(self) -> dict[str, Any]:
        """The :class:`~aiida_mlip.properties.validation.ValidationSettings` mapping that computes them."""
        settings: dict[str, Any] = {"properties": self.properties}
        settings.update({name: getattr(self, name).to_dict() for name in self.properties})
        return settings

    def check_structures(self, structures: Sequence[Atoms], cutoff: float | None = None) -> Atoms:
        """The structure the properties are computed on, if it suits every quantity; before anything runs.

        Parameters
        ----------
        structures
            The run's start structures.
        cutoff
            The potential's cutoff, Angstrom: the phonon supercell must be twice as wide.

        Raises
        ------
        SettingsError
            The structure index out of range; a structure not periodic in 3D; a phonon supercell
            narrower than twice the cutoff; ``eos.a0`` of a crystal that is not cubic; a phonon point
            that is not a high-symmetry point of the primitive cell's Bravais lattice, or a branch
            beyond its ``3 x atoms``.
        """
        from aiida_mlip.properties.eos import cubic_lattice_constant
        from aiida_mlip.properties.phonons import special_points
        from aiida_mlip.properties.validation import ValidationSettings, check_inputs

        where = "`convergence.properties"
        if self.structure >= len(structures):
            raise SettingsError(
                f"{where}.structure`: {self.structure} is out of range: the run has {len(structures)} "
                f"start structure(s) (indices 0 to {len(structures) - 1})"
            )
        atoms = structures[self.structure]
        formula = atoms.get_chemical_formula()
        try:
            check_inputs(ValidationSettings.from_mapping(self.validation_settings()), atoms, cutoff=cutoff)
        except SettingsError as exception:
            raise SettingsError(f"{where}` on structure {self.structure} ({formula}): {exception}") from None
        if "eos.a0" in self.quantities and cubic_lattice_constant(atoms) is None:
            raise SettingsError(
                f"{where}.quantities`: `eos.a0` is the cubic lattice constant, and {formula} "
                f"(structure {self.structure}) is not cubic; use `eos.V0`"
            )
        phonon_names = [name for name in self.quantities if name.startswith("phonons.")]
        if phonon_names:
            labels, branches = special_points(atoms, self.phonons.primitive)
            for name in phonon_names:
                found = _PHONON.match(name.split(".", 1)[1])
                if found["point"] not in labels:
                    raise SettingsError(
                        f"{where}.quantities`: `{name}`: {found['point']} is not a high-symmetry point of "
                        f"the primitive cell of {formula} (structure {self.structure}): "
                        f"{', '.join(labels)}{suggest(found['point'], labels)}"
                    )
                if int(found["branch"]) > branches:
                    raise SettingsError(
                        f"{where}.quantities`: `{name}`: the primitive cell of {formula} has "
                        f"{branches} branches (1 to {branches})"
                    )
        return atoms


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def judge_quantity(entry: Mapping[str, Any], tolerance: QuantityTolerance | Mapping) -> dict[str, Any]:
    """One quantity of an iteration judged against its tolerances.

    Parameters
    ----------
    entry
        ``mean`` and ``std`` (over the committee members, the quantity's unit), ``previous`` (the
        mean of the last different committee, or None), and optionally ``unit`` and ``error`` (why
        no value was computed: then it is not within tolerance).
    tolerance
        :class:`QuantityTolerance` or its mapping.

    Returns
    -------
    dict
        ``entry`` with ``spread`` (``std / |mean|``), ``change`` (``|mean - previous| / |previous|``,
        None without a previous value), ``tolerance`` ({change, spread}), ``within_change``,
        ``within_spread`` and ``within_tolerance`` (both).
    """
    if not isinstance(tolerance, QuantityTolerance):
        tolerance = QuantityTolerance.from_mapping(tolerance)
    mean, std, previous = entry.get("mean"), entry.get("std"), entry.get("previous")
    spread = abs(std) / abs(mean) if _finite(mean) and _finite(std) and mean != 0 else None
    change = (
        abs(mean - previous) / abs(previous) if _finite(mean) and _finite(previous) and previous else None
    )
    valid = not entry.get("error")  # a quantity whose property failed is never within tolerance
    within_change = valid and change is not None and change <= tolerance.change
    within_spread = valid and spread is not None and spread <= tolerance.spread
    return {
        **entry,
        "spread": spread,
        "change": change,
        "tolerance": {"change": tolerance.change, "spread": tolerance.spread},
        "within_change": within_change,
        "within_spread": within_spread,
        "within_tolerance": within_change and within_spread,
    }


def _percent(value: float) -> str:
    return f"{100 * value:.3g}%"


def quantity_text(name: str, judged: Mapping[str, Any]) -> str:
    """``eos.B0 38.2 +- 1.9 GPa (change 1.2% <= 5%, spread 5% <= 10%)``: one judged quantity in words."""
    if judged.get("error") or not _finite(judged.get("mean")):
        return f"{name}: {judged.get('error') or 'no value'}"
    tolerance = judged["tolerance"]
    unit = f" {judged['unit']}" if judged.get("unit") else ""

    def against(measure: str, missing: str) -> str:
        if judged[measure] is None:
            return missing
        sign = "<=" if judged[f"within_{measure}"] else ">"
        return f"{measure} {_percent(judged[measure])} {sign} {_percent(tolerance[measure])}"

    change = against("change", "no change yet: no earlier committee")
    spread = against("spread", "no spread: zero mean")
    std = f"{judged['std']:.2g}" if _finite(judged.get("std")) else "n/a"
    return f"{name} {judged['mean']:.4g} +- {std}{unit} ({change}, {spread})"


def property_probes(name: str, atoms: Atoms, settings: PropertyConvergenceSettings) -> list[Atoms]:
    """The structures property ``name`` evaluates, of ``atoms`` as given.

    Each has ``info["probe"]`` (the property) and ``info["config_type"]`` (``probe_<property>``,
    which a dataset keeps).

    ``eos``: the volume points (:func:`~aiida_mlip.properties.eos.volume_points`); ``elastic``: the
    cell strained by ``+-strain`` on each of the 6 Voigt components for each of ``strains``
    (:func:`~aiida_mlip.properties.elastic.strained`); ``phonons``: the supercells with one displaced
    atom (:func:`~aiida_mlip.properties.phonons.displaced_supercells`). The kernels relax the
    structure per member before; the probes are of the given structure (near the minimum).
    """
    from aiida_mlip.properties.elastic import strained
    from aiida_mlip.properties.eos import volume_points
    from aiida_mlip.properties.phonons import displaced_supercells

    if name == "eos":
        images = volume_points(atoms, settings.eos)
    elif name == "elastic":
        images = [
            strained(atoms, component, sign * strain)
            for strain in settings.elastic.strains
            for component in range(6)
            for sign in (1, -1)
        ]
    elif name == "phonons":
        images = displaced_supercells(atoms, settings.phonons)
    else:
        raise ValueError(f"no probes for property `{name}` ({', '.join(CONVERGENCE_PROPERTIES)})")
    for image in images:
        image.calc = None
        image.info = {"probe": name, "config_type": f"probe_{name}"}
    return images


def probes_due(
    fields: Mapping[str, Mapping[str, Any]], settings: PropertyConvergenceSettings, probed
) -> list[str]:
    """The properties to probe after an iteration: a quantity's spread above tolerance, not yet probed.

    Parameters
    ----------
    fields
        The iteration's ``properties`` record entry (:func:`aiida_mlip.history.property_fields`).
    settings
        The ``convergence.properties`` block; nothing is due when its ``probes`` is off.
    probed
        Names of the properties already probed in the run.
    """
    if not settings.probes:
        return []
    due = []
    for name, entry in fields.items():
        prop = name.split(".", 1)[0]
        if prop in probed or prop in due or entry.get("mean") is None:
            continue
        if not entry.get("within_spread"):
            due.append(prop)
    return due

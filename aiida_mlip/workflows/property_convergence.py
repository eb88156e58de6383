"""The property step of ``ActiveLearningWorkChain``: the properties of each new committee, for ``convergence.properties``.

After each iteration's training, :class:`PropertyConvergenceMixin.compute_properties` runs the
validation layer's ``compute_property`` calcfunction (:mod:`aiida_mlip.workflows.validation`) once per
property the ``convergence.properties`` quantities need (``eos``, ``elastic``, ``phonons``), with the
new committee and the chosen start structure as inputs and no reference: every member computes the
property, and the rows give the committee mean and std of each quantity. The structure comes out of
the run's ``StructureSetData`` through :func:`select_structure`, so the provenance graph links each
property calculation to the structure and the potential it judged. The iteration's history record
gets ``properties`` (:func:`aiida_mlip.history.property_fields`), and
:func:`aiida_mlip.learning.convergence.decide` judges them with the other criteria.

An iteration that trained no new committee computes nothing: the last values carry over (a
committee compared with itself would show no change and prove nothing).

With ``convergence.properties.probes`` (default on), a property whose committee spread is above a
quantity's tolerance gets its own structures made by :func:`property_probe_structures` (from the
same structure node), and the next iteration labels them with its selection
(:func:`join_structures`), once per property (see
:mod:`aiida_mlip.learning.property_convergence`).
"""

from __future__ import annotations

import time

from aiida import orm
from aiida.engine import calcfunction

from aiida_mlip.data.structures import StructureSetData
from aiida_mlip.history import property_fields
from aiida_mlip.learning.convergence import ConvergenceSettings
from aiida_mlip.learning.property_convergence import probes_due, quantity_text
from aiida_mlip.potentials.frames import Frames
from aiida_mlip.settings import SettingsError

__all__ = (
    "PropertyConvergenceMixin",
    "join_structures",
    "property_probe_structures",
    "select_structure",
    "validate_property_convergence",
)


@calcfunction
def select_structure(structures: StructureSetData, index: orm.Int) -> orm.StructureData:
    """Structure number ``index`` (from 0) of ``structures``, as the ``StructureData`` a property calculation takes."""
    return orm.StructureData(ase=structures.get_atoms()[index.value])


@calcfunction
def property_probe_structures(
    structure: orm.StructureData, settings: orm.Dict, names: orm.List
) -> StructureSetData:
    """The structures the properties ``names`` evaluate on ``structure`` (``property_probes``), to label."""
    from aiida_mlip.learning.property_convergence import PropertyConvergenceSettings, property_probes

    block = PropertyConvergenceSettings.from_mapping(settings.get_dict())
    atoms = structure.get_ase()
    images = [image for name in names.get_list() for image in property_probes(name, atoms, block)]
    return StructureSetData.from_atoms(images)


@calcfunction
def join_structures(first: StructureSetData, second: StructureSetData) -> StructureSetData:
    """The structures of ``first`` followed by those of ``second``."""
    return StructureSetData(Frames.concatenate([first.get_frames(), second.get_frames()]))


def validate_property_convergence(settings, inputs) -> str | None:
    """Check ``convergence.properties`` against the run's structures and cutoff, before anything runs.

    Parameters
    ----------
    settings
        The run's :class:`~aiida_mlip.learning.settings.ActiveLearningSettings`.
    inputs
        The work chain's inputs (``structures``, optional ``potential``).

    Returns
    -------
    str or None
        The reason the block cannot work (structure index out of range, a structure that is not
        periodic, a phonon supercell narrower than twice the cutoff, a phonon point the structure's
        lattice does not have, ``eos.a0`` of a crystal that is not cubic), or None.
    """
    properties = settings.convergence.properties
    structures = inputs.get("structures")
    if properties is None or structures is None:
        return None
    cutoff = settings.training.cutoff
    if inputs.get("potential") is not None:
        cutoff = max(cutoff, inputs["potential"].cutoff)
    try:
        properties.check_structures(structures.get_atoms(), cutoff=cutoff)
    except SettingsError as exception:
        return str(exception)
    return None


class PropertyConvergenceMixin:
    """The steps of ``ActiveLearningWorkChain`` that compute the properties of ``convergence.properties``."""

    def converges_on_properties(self) -> bool:
        return self._property_settings() is not None

    def _property_settings(self):
        return ConvergenceSettings.from_mapping(self.inputs.convergence.get_dict()).properties

    def compute_properties(self):
        """The properties of the current committee, one ``compute_property`` each, into the iteration's record."""
        from aiida_mlip.workflows.validation import compute_property

        settings = self._property_settings()
        potential = self.ctx.potential
        last = self.ctx.get("property_fields")
        if last is not None and last["potential"] == potential.uuid:
            self.ctx.record["properties"] = last["fields"]
            self.report(f"no new committee: the properties of potential <{potential.pk}> carry over")
            return
        if self.ctx.get("property_structure") is None:
            self.ctx.property_structure = select_structure(
                self.inputs.structures,
                orm.Int(settings.structure),
                metadata={"call_link_label": "property_structure"},
            )
            self.ctx.property_settings = orm.Dict(settings.validation_settings())
            self.ctx.property_convergence_settings = orm.Dict(settings.to_dict())
        rows, failures, start = [], {}, time.time()
        for name in settings.properties:
            _, node = compute_property.run_get_node(
                potential=potential,
                structure=self.ctx.property_structure,
                settings=self.ctx.property_settings,
                name=orm.Str(name),
                metadata={"call_link_label": f"property_{name}_{self.ctx.iteration}"},
            )
            if node.is_finished_ok:
                rows.extend(node.outputs.result["rows"])
            else:
                failures[name] = node.exit_message or f"exit status {node.exit_status}"
        fields = property_fields(
            rows, failures, last["fields"] if last is not None else None, settings.quantities
        )
        self.ctx.property_fields = {"potential": potential.uuid, "fields": fields}
        self.ctx.record["properties"] = fields
        self.ctx.record["times"]["properties"] = time.time() - start
        self.report(
            f"properties of potential <{potential.pk}>: "
            + "; ".join(quantity_text(name, entry) for name, entry in fields.items())
        )
        self._schedule_probes(settings, fields)

    def _schedule_probes(self, settings, fields) -> None:
        """Make the probes of the properties whose spread is too large, for the next iteration's labelling."""
        probed = list(self.ctx.get("probed", []))
        due = probes_due(fields, settings, probed)
        if not due:
            return
        probes = property_probe_structures(
            self.ctx.property_structure,
            self.ctx.property_convergence_settings,
            orm.List(due),
            metadata={"call_link_label": f"property_probes_{self.ctx.iteration}"},
        )
        self.ctx.probes = probes
        self.ctx.probed = probed + due
        kinds = list(probes.get_frames().config_type)
        counts = {name: kinds.count(f"probe_{name}") for name in due}
        self.ctx.record["probes_due"] = counts
        self.report(
            "committee spread above tolerance for "
            + ", ".join(due)
            + f": its {probes.n_frames} structure(s) are labelled in the next iteration ({counts})"
        )

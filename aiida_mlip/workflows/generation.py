"""Generated start structures of ``ActiveLearningWorkChain``: surfaces, defects, alloys, strained cells,
random packings relaxed with the iteration's committee.

At each iteration where a kind of ``exploration.generate``
(:class:`~aiida_mlip.exploration.generator_settings.GenerateSettings`) is due, every start structure
it applies to is taken out of the start set as a ``StructureData`` (:func:`structure_of`), the
:func:`generate_structures` calcfunction makes the new structures from it, and
:func:`add_structures` joins them to the exploration's start set, where they stay for the later
iterations. Every generated structure is thus a ``StructureData`` node with its parent and the
settings as inputs of the calcfunction that made it; random packings (kind ``random``) also have
the iteration's ``PotentialData``, which relaxed them, as an input. When the generated structures would take more
than ``exploration.generate.max_share`` of the walkers, :func:`take_structures` keeps the given
structures and the generated ones whose turn it is
(:meth:`~aiida_mlip.exploration.generator_settings.GenerateSettings.explored`).
"""

from __future__ import annotations

from aiida import orm
from aiida.engine import calcfunction

from aiida_mlip.data.potential import PotentialData
from aiida_mlip.data.structures import StructureSetData
from aiida_mlip.exploration.generator_settings import KINDS, GenerateSettings
from aiida_mlip.exploration.generators import generate
from aiida_mlip.potentials.frames import Frames

__all__ = (
    "GenerationMixin",
    "add_structures",
    "generate_structures",
    "structure_of",
    "take_structures",
    "validate_collective_variables",
    "validate_generation",
)


@calcfunction
def structure_of(structures: StructureSetData, index: orm.Int) -> orm.StructureData:
    """Structure ``index`` of a set as a ``StructureData`` (the parent of generated structures)."""
    return orm.StructureData(ase=structures.get_atoms()[index.value])


@calcfunction
def generate_structures(
    structure: orm.StructureData,
    settings: orm.Dict,
    iteration: orm.Int,
    parent: orm.Int,
    potential: PotentialData | None = None,
) -> dict:
    """The structures the ``exploration.generate`` block makes from ``structure`` at ``iteration``.

    ``parent`` is the structure's index among the start structures (each kind's ``parents`` filter
    and the random stream depend on it). ``potential`` is the committee of the iteration, given
    when the ``random`` kind is due: its packings are relaxed with it (on the CPU, through
    :func:`aiida_mlip.potentials.load_calculator`), so it is an input of the generation. Outputs:
    ``structure_0``, ``structure_1``, ... (each labelled with its kind, e.g. ``surface [1, 1, 1]``,
    ``random Al8``) and ``details``, a ``Dict`` with the generator's record of each (kind, Miller
    index, removed sites, strain tensor, a random packing's relaxation: steps, converged, exploded,
    energy per atom, max force, committee max force deviation, ...).
    """
    block = GenerateSettings.from_mapping(settings.get_dict())
    calculator = None
    if potential is not None:
        from aiida_mlip.potentials import load_calculator

        with potential.as_path() as path:
            calculator = load_calculator(path, device="cpu", spread_every=1)
    images = generate({parent.value: structure.get_ase()}, block, iteration.value, calculator)
    outputs, details = {}, {}
    for number, atoms in enumerate(images):
        key = f"structure_{number}"
        node = orm.StructureData(ase=atoms)
        node.label = atoms.info["generator"] + (f" {atoms.info['miller']}" if "miller" in atoms.info else "")
        if atoms.info["generator"] == "random":
            node.label += f" {atoms.get_chemical_formula()}"
        outputs[key] = node
        details[key] = {name: value for name, value in atoms.info.items()}
    outputs["details"] = orm.Dict(details)
    return outputs


@calcfunction
def add_structures(structures: StructureSetData, **generated: orm.StructureData) -> StructureSetData:
    """The start set followed by the generated structures (in the order of their link labels' numbers)."""

    def order(key: str) -> tuple[int, ...]:
        return tuple(int(part) for part in key.split("_") if part.isdigit())

    images = [generated[key].get_ase() for key in sorted(generated, key=order)]
    return StructureSetData(
        Frames.concatenate([structures.get_frames(), Frames.from_atoms(images, require_labels=False)])
    )


@calcfunction
def take_structures(structures: StructureSetData, indices: orm.List) -> StructureSetData:
    """The structures of a set at ``indices``, in that order."""
    return StructureSetData(structures.get_frames().subset(indices.get_list()))


def validate_generation(generate_block: GenerateSettings | None, structures) -> str | None:
    """Why ``exploration.generate`` does not fit the start structures, or ``None``.

    A ``parents`` index beyond the structures, or an element (substitutions, interstitials) that no
    start structure has, which the committee, trained on the start structures' elements, cannot know.
    """
    if generate_block is None or structures is None:
        return None
    from aiida_mlip.settings import SettingsError

    try:
        generate_block.check(n_structures=structures.n_frames)
    except SettingsError as exception:
        return str(exception)
    unknown = sorted(generate_block.elements - set(structures.elements))
    if unknown:
        return (
            f"`exploration.generate` puts in {unknown}, which no start structure has: the committee "
            "would not know them (give a start structure with them)"
        )
    return None


def validate_collective_variables(exploration: dict, structures) -> str | None:
    """Why a metadynamics collective variable (``exploration.md`` or a schedule entry) names atoms that
    a start structure does not have, or ``None``."""
    if structures is None:
        return None
    from aiida_mlip.exploration.metadynamics import MetadynamicsSettings
    from aiida_mlip.settings import SettingsError

    blocks = [exploration.get("md") or {}, *(exploration.get("schedule") or [])]
    sizes = structures.get_frames().natoms_per_frame
    for block in blocks:
        if not block.get("metadynamics"):
            continue
        settings = MetadynamicsSettings.from_mapping(block["metadynamics"])
        try:
            for index, size in enumerate(sizes):
                settings.check_atoms(int(size), f"start structure {index}")
        except SettingsError as exception:
            return str(exception)
    return None


class GenerationMixin:
    """The start structures of an iteration of ``ActiveLearningWorkChain``, generated ones included."""

    def _exploration_structures(self) -> StructureSetData:
        """The start set of this iteration: the inputs, plus what ``exploration.generate`` made so far."""
        structures = self.ctx.get("structures") or self.inputs.structures
        values = self.inputs.exploration.get_dict().get("generate")
        if not values:
            return structures
        settings = GenerateSettings.from_mapping(values)
        iteration = self.ctx.iteration
        due = settings.kinds_at(iteration)
        generated = {}
        for index in range(self.inputs.structures.n_frames):
            if not any(block.applies_to(index) for _, block in due):
                continue
            parent = structure_of(
                self.inputs.structures,
                orm.Int(index),
                metadata={"call_link_label": f"start_structure_{index}_{iteration}"},
            )
            # the random kind relaxes its packings with the committee of this iteration
            relaxing = any(name == "random" and block.applies_to(index) for name, block in due)
            extra = {"potential": self._current_potential()} if relaxing else {}
            outputs = generate_structures(
                parent,
                orm.Dict(values),
                orm.Int(iteration),
                orm.Int(index),
                **extra,
                metadata={"call_link_label": f"generate_{iteration}_{index}"},
            )
            for key, node in outputs.items():
                if key.startswith("structure_"):
                    generated[f"parent_{index}_{key}"] = node
        if generated:
            kinds = ", ".join(name for name, _ in due if name in KINDS)
            structures = add_structures(
                structures, **generated, metadata={"call_link_label": f"add_structures_{iteration}"}
            )
            self.report(f"iteration {iteration}: {len(generated)} generated start structure(s) ({kinds})")
        self.ctx.structures = structures
        return structures

    def _current_potential(self) -> PotentialData:
        """The committee of this iteration (the one its exploration runs), which relaxes random packings."""
        potential = self.ctx.get("potential")
        if potential is None:  # pragma: no cover - the exploration always follows a training
            raise RuntimeError(
                "`exploration.generate.random` needs the iteration's committee: there is none yet"
            )
        return potential

    def _walker_structures(self, structures: StructureSetData) -> StructureSetData:
        """The structures explored this iteration: all given ones, and the generated ones whose turn it
        is when all of them would take more than ``exploration.generate.max_share`` of the walkers
        (every structure runs the same walkers, so the share of walkers is the share of structures)."""
        values = self.inputs.exploration.get_dict().get("generate")
        n_start = self.inputs.structures.n_frames
        n_generated = structures.n_frames - n_start
        if not values or n_generated <= 0:
            return structures
        explored = GenerateSettings.from_mapping(values).explored(n_generated, n_start, 1, self.ctx.iteration)
        if len(explored) == n_generated:
            return structures
        self.report(
            f"iteration {self.ctx.iteration}: exploring {len(explored)} of the {n_generated} generated "
            f"structures (exploration.generate.max_share)"
        )
        indices = list(range(n_start)) + [n_start + index for index in explored]
        return take_structures(
            structures,
            orm.List(indices),
            metadata={"call_link_label": f"take_structures_{self.ctx.iteration}"},
        )

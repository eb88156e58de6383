"""Structure generators: start structures that plain MD from the bulk never visits.

Each generator takes a parent structure (ASE ``Atoms``) and returns new ``Atoms``, each with
``info["generator"]`` (the kind) and the parameters that made it, so an exploration can start from
surfaces, point defects, disordered alloys and strained cells:

- :func:`surface_slabs`: a slab per Miller index (of the parent's conventional standard cell),
  at least ``thickness`` thick, with exactly ``vacuum`` Angstrom of empty space along the normal
  (pymatgen's ``SlabGenerator``; Tran et al., Sci. Data 3, 160080 (2016));
- :func:`vacancies`: random sites removed;
- :func:`interstitials`: atoms inserted at the most open of many random points (the point farthest
  from every atom, a sampled stand-in for the largest Voronoi void);
- :func:`substitutions`: random substitutional disorder at a given composition (exact counts), or
  special quasi-random structures (:mod:`~aiida_mlip.exploration.sqs`);
- :func:`strained_cells`: cells deformed by random symmetric strain tensors (normal and shear),
  ``cell' = cell (I + eps)``, atoms moved with the cell;
- :func:`~aiida_mlip.exploration.random_search.random_structures`: random packings of the
  parent's composition in random cells, relaxed with the current committee (AIRSS-like random
  structure search; Pickard and Needs, J. Phys.: Condens. Matter 23, 053201 (2011)).

:func:`generate` runs the kinds of a :class:`~aiida_mlip.exploration.generator_settings.GenerateSettings`
block due at an iteration; the work chain calls it through a calcfunction per parent structure,
the AiiDA-free loop directly.

Units: Angstrom; strains are dimensionless.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.geometry import get_distances

from .generator_settings import (
    GenerateSettings,
    InterstitialSettings,
    StrainSettings,
    SubstitutionSettings,
    SurfaceSettings,
    VacancySettings,
)
from .random_search import element_counts, random_structures
from .sqs import special_quasirandom

__all__ = (
    "generate",
    "interstitials",
    "random_structures",
    "strained_cells",
    "substitutions",
    "surface_slabs",
    "vacancies",
)


def _tagged(atoms: Atoms, kind: str, **details) -> Atoms:
    atoms = atoms.copy()
    atoms.calc = None
    for key in list(atoms.info):  # MD and labelling annotations of the parent do not describe the child
        del atoms.info[key]
    atoms.info["generator"] = kind
    atoms.info.update(details)
    return atoms


def _slab(parent: Atoms, miller: tuple[int, int, int], settings: SurfaceSettings) -> Atoms:
    """One slab of ``parent`` at least ``settings.thickness`` thick (atom span along the normal)."""
    with warnings.catch_warnings():  # spglib's notice about its error handling, not a problem of the cell
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="spglib")
        return _pymatgen_slab(parent, miller, settings)


def _pymatgen_slab(parent: Atoms, miller: tuple[int, int, int], settings: SurfaceSettings) -> Atoms:
    from pymatgen.core.surface import SlabGenerator
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    structure = AseAtomsAdaptor.get_structure(parent)
    conventional = SpacegroupAnalyzer(structure, symprec=0.1).get_conventional_standard_structure()
    size = settings.thickness
    for _ in range(20):  # pymatgen's slab size counts a layer spacing more than the atoms span
        generator = SlabGenerator(
            conventional,
            miller,
            min_slab_size=size,
            min_vacuum_size=settings.vacuum,
            center_slab=True,
            primitive=True,
            reorient_lattice=True,
        )
        slab = AseAtomsAdaptor.get_atoms(generator.get_slab().get_orthogonal_c_slab())
        span = float(np.ptp(slab.positions[:, 2]))
        if span >= settings.thickness - 1e-6:
            break
        size += max(settings.thickness - span, 0.5)
    else:  # pragma: no cover - pymatgen always grows the slab with min_slab_size
        raise RuntimeError(f"could not build a {miller} slab {settings.thickness} A thick")
    slab.info.clear()
    slab.set_pbc(True)
    slab.center(vacuum=settings.vacuum / 2, axis=2)  # vacuum/2 on each side: one gap of `vacuum`
    cell = slab.cell
    area = np.linalg.norm(np.cross(cell[0], cell[1]))
    heights = (area / np.linalg.norm(cell[1]), area / np.linalg.norm(cell[0]))  # widths across a, b
    repeat = [max(1, math.ceil(settings.min_width / height - 1e-9)) for height in heights]
    return slab.repeat((*repeat, 1))


def surface_slabs(parent: Atoms, settings: SurfaceSettings) -> list[Atoms]:
    """One slab per Miller index of ``settings.miller``.

    The Miller indices refer to the parent's conventional standard cell (spglib at ``symprec`` 0.1
    through pymatgen), so ``(1, 1, 1)`` of an fcc supercell is the close-packed plane. The slab's
    normal is the cell's third axis; it is at least ``thickness`` Angstrom thick (the span of the
    atoms along the normal) and has exactly ``vacuum`` Angstrom between its periodic images; it is
    repeated in-plane until both in-plane widths reach ``min_width`` Angstrom. ``info["miller"]``
    holds the index.
    """
    return [
        _tagged(_slab(parent, tuple(miller), settings), "surface", miller=list(miller))
        for miller in settings.miller
    ]


def vacancies(parent: Atoms, settings: VacancySettings, rng: np.random.Generator) -> list[Atoms]:
    """``settings.structures`` copies of ``parent`` with ``settings.count`` random sites removed each.

    ``info["removed"]`` holds the indices (in the parent) of the removed atoms.
    """
    if settings.count >= len(parent):
        raise ValueError(f"cannot remove {settings.count} of the {len(parent)} atoms of the parent")
    images = []
    for _ in range(settings.structures):
        removed = sorted(int(i) for i in rng.choice(len(parent), settings.count, replace=False))
        child = parent.copy()
        del child[removed]
        images.append(_tagged(child, "vacancy", removed=removed))
    return images


def _most_open_point(atoms: Atoms, rng: np.random.Generator, samples: int) -> tuple[np.ndarray, float]:
    """The sampled point of the cell farthest from every atom (periodic), and that distance (Angstrom)."""
    points = rng.random((samples, 3)) @ atoms.cell.array
    _, distances = get_distances(points, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    nearest = distances.min(axis=1)
    best = int(np.argmax(nearest))
    return points[best], float(nearest[best])


def interstitials(parent: Atoms, settings: InterstitialSettings, rng: np.random.Generator) -> list[Atoms]:
    """``settings.structures`` copies of ``parent`` with ``settings.count`` extra atoms each.

    Each atom goes to the most open of ``settings.samples`` uniformly random points of the cell (the
    one with the largest distance to its nearest atom); a point closer than ``settings.min_distance``
    to every candidate is an error, not a silent overlap. The element is ``settings.element``, or the
    parent's most common one. ``info["nearest"]`` holds each inserted atom's nearest-neighbour
    distance, Angstrom.
    """
    symbols = parent.get_chemical_symbols()
    element = settings.element or max(set(symbols), key=symbols.count)
    images = []
    for _ in range(settings.structures):
        child = parent.copy()
        nearest = []
        for _ in range(settings.count):
            point, distance = _most_open_point(child, rng, settings.samples)
            if distance < settings.min_distance:
                raise ValueError(
                    f"no room for an interstitial: the most open point is {distance:.2f} A from an atom "
                    f"(min_distance {settings.min_distance} A)"
                )
            child += Atoms(element, positions=[point])
            nearest.append(round(distance, 4))
        images.append(_tagged(child, "interstitial", element=element, nearest=nearest))
    return images


def substitutions(parent: Atoms, settings: SubstitutionSettings, rng: np.random.Generator) -> list[Atoms]:
    """``settings.structures`` random alloys on the parent's sites at ``settings.composition``.

    Each element gets ``round(fraction * N)`` sites (the largest remainders decide the last ones so
    the counts add up to ``N``), shuffled at random over all sites: an ideal random solid solution
    on the parent lattice. With ``method: sqs`` the sites are arranged as a special quasi-random
    structure instead (:func:`~aiida_mlip.exploration.sqs.special_quasirandom`), and
    ``info["sro"]`` / ``info["sro_random"]`` hold the largest Warren-Cowley parameter per shell of
    the result and of a plain shuffle. ``info["composition"]`` holds the counts.
    """
    composition = element_counts(settings.composition, len(parent))
    pool = np.repeat(list(composition), list(composition.values()))
    images = []
    for _ in range(settings.structures):
        if settings.method == "sqs":
            child = special_quasirandom(parent, composition, rng, settings.shells, settings.sqs_steps)
            details = {"sro": child.info.pop("sro"), "sro_random": child.info.pop("sro_random")}
        else:
            child = parent.copy()
            child.set_chemical_symbols(list(rng.permutation(pool)))
            details = {}
        images.append(
            _tagged(child, "substitution", composition=dict(composition), method=settings.method, **details)
        )
    return images


def strain_tensor(rng: np.random.Generator, max_strain: float, shear: bool) -> np.ndarray:
    """A random symmetric strain tensor (3, 3): components uniform in ``[-max_strain, max_strain]``,
    off-diagonal ones zero unless ``shear``."""
    eps = np.diag(rng.uniform(-max_strain, max_strain, 3))
    if shear:
        upper = rng.uniform(-max_strain, max_strain, 3)
        for (i, j), value in zip(((0, 1), (0, 2), (1, 2)), upper, strict=True):
            eps[i, j] = eps[j, i] = value
    return eps


def strained_cells(parent: Atoms, settings: StrainSettings, rng: np.random.Generator) -> list[Atoms]:
    """``settings.structures`` copies of ``parent`` deformed by random strains (:func:`strain_tensor`).

    The cell rows become ``cell (I + eps)`` and the atoms keep their fractional positions;
    ``info["strain"]`` holds ``eps`` (3 x 3, dimensionless).
    """
    images = []
    for _ in range(settings.structures):
        eps = strain_tensor(rng, settings.max_strain, settings.shear)
        child = parent.copy()
        child.set_cell(parent.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        images.append(_tagged(child, "strain", strain=eps.round(12).tolist()))
    return images


def generate(
    parents: Sequence[Atoms] | Mapping[int, Atoms],
    settings: GenerateSettings,
    iteration: int,
    calculator: Calculator | None = None,
) -> list[Atoms]:
    """The structures of every kind of ``settings`` due at ``iteration`` (from 1), from each parent.

    Parameters
    ----------
    parents
        The start structures; or index -> structure, when only some of them are passed (each kind's
        ``parents`` names indices of the start structures).
    settings
        The ``exploration.generate`` block.
    iteration
        The active-learning iteration; a kind runs when it is in its ``iterations``.
    calculator
        The committee of this iteration, which relaxes the ``random`` kind's packings (needed only
        when that kind is due with ``steps`` above 0).

    Returns
    -------
    list of Atoms
        In the order parent, kind (surface, vacancy, interstitial, substitution, strain, random); each has
        ``info["generator"]``, ``info["parent"]`` (the parent's index) and ``info["iteration"]``.
        The random stream of a (parent, kind) is seeded from ``settings.seed``, the iteration and
        the parent index, so one call per parent gives the same structures as one call for all.
    """
    indexed = dict(parents) if isinstance(parents, Mapping) else dict(enumerate(parents))
    images = []
    for index, parent in sorted(indexed.items()):
        for number, (kind, block) in enumerate(settings.kinds_at(iteration)):
            if not block.applies_to(index):
                continue
            rng = np.random.default_rng([settings.seed, iteration, index, number])
            if kind == "surfaces":
                made = surface_slabs(parent, block)
            elif kind == "random":
                made = random_structures(parent, block, rng, calculator)
            else:
                made = {
                    "vacancies": vacancies,
                    "interstitials": interstitials,
                    "substitutions": substitutions,
                    "strains": strained_cells,
                }[kind](parent, block, rng)
            for atoms in made:
                atoms.info.update(parent=index, iteration=iteration)
            images += made
    return images

"""Materials properties computed with a potential, the way one judges it: pure ASE + phonopy, no AiiDA.

Every kernel takes an ASE ``Atoms`` and an ASE calculator (default: the one attached to the atoms),
a settings block (one :class:`~aiida_mlip.settings.Settings` model per kernel, with its defaults)
and returns a plain dataclass in eV, Angstrom, GPa, THz, fs and m/s. Each result has ``scalars()``,
the flat ``{name: float}`` that :func:`~.committee.committee_property` turns into a committee mean
and spread (``B0 = 76 +- 2 GPa``).

- :mod:`~.eos`: energy and pressure over a volume range, Birch-Murnaghan fit, lattice constant.
- :mod:`~.pressure`: virial pressure from an NVT trajectory against the stress-based pressure.
- :mod:`~.elastic`: C_ij by stress-strain with relaxed ions, Voigt-Reuss-Hill moduli, sound speeds.
- :mod:`~.phonons`: finite-displacement phonons through phonopy: high-symmetry points, band
  structure, DOS, a PNG plot, imaginary modes flagged.
- :mod:`~.drift`: NVE energy drift per atom per ps against the time step.
- :mod:`~.neb`: nudged elastic band barrier with the committee spread per image.
- :mod:`~.committee`: any kernel once per committee member: mean and spread of every scalar.
- :mod:`~.checks`: the input checks (:class:`~.checks.PropertyInputError`) every kernel runs first.
- :mod:`~.relax`: the relaxations of ions and cell the kernels share.
"""

from aiida_mlip.properties.checks import PropertyInputError

__all__ = ("PropertyInputError",)

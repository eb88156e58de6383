"""MD exploration and property kernels: pure ASE, no AiiDA.

- :mod:`.parameters`: what an exploration does, validated (ensemble, ramps, trust window...).
- :mod:`.watch`: the checks on a frame (committee spread, gamma, closest pair, NaN, energy jumps).
- :mod:`.md`: walkers of NVT/NPT/NVE dynamics that stop at the break threshold or on explosion.
- :mod:`.lockstep`: the walkers of one exploration in lockstep, one batched committee pass per MD step.
- :mod:`.bias`: the uncertainty bias (walkers pulled towards committee disagreement).
- :mod:`.metadynamics`: well-tempered metadynamics on a distance.
- :mod:`.pimd`: path-integral (ring-polymer) MD with a PILE-L thermostat, the committee on every bead.
- :mod:`.generators` and :mod:`.generator_settings`: slabs, vacancies, interstitials, alloys, strained
  cells, and the ``exploration.generate`` block; :mod:`.random_search`: random packings relaxed with
  the committee (AIRSS-like).
- :mod:`.records`: trajectory, per-frame table, candidates and summary files.
"""

from .md import ExplorationResult, WalkerResult, explore, grader, run_walker
from .parameters import ExploreParameters
from .records import write_exploration

__all__ = (
    "ExplorationResult",
    "ExploreParameters",
    "WalkerResult",
    "explore",
    "grader",
    "run_walker",
    "write_exploration",
)

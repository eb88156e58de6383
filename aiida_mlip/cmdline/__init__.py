"""The ``aiida-mlip`` command line."""

from aiida_mlip.cmdline import (  # noqa: F401  (potential, dataset, launch, status, watch, lineage)
    data,
    neb,  # noqa: F401  (neb)
    runs,
    setup,  # noqa: F401  (registers the sub-commands)
    setup_qe,  # noqa: F401  (setup pw, setup pseudos)
    validate,  # noqa: F401  (validate)
)
from aiida_mlip.cmdline.root import cmd_root

__all__ = ("cmd_root",)

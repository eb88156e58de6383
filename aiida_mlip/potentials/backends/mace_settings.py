"""The MACE architecture settings (``training.mace``); importable without mace-torch.

The defaults make a small model (16 invariant channels, two interactions, body order 3): quick to
train on a CPU, for active learning of one or a few elements. A user who wants MACE's published
accuracy raises ``channels`` (128) and ``max_L`` (1 or 2); see Batatia et al., "MACE: Higher order
equivariant message passing neural networks for fast and accurate force fields", NeurIPS 2022.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

import pydantic

from aiida_mlip.settings import Settings

__all__ = ("INSTALL_HINT", "MaceSettings", "mace_version")

INSTALL_HINT = "the `mace` backend needs mace-torch: pip install 'aiida-mlip[mace]'"


def mace_version() -> str:
    """The installed mace-torch version.

    Raises
    ------
    BackendUnavailable
        When mace-torch is not installed (the message names the extra that installs it).
    """
    try:
        return package_version("mace-torch")
    except PackageNotFoundError:
        from aiida_mlip.potentials.backends import BackendUnavailable

        raise BackendUnavailable(INSTALL_HINT) from None


class MaceSettings(Settings):
    """Architecture of each MACE member (the ``mace`` block of the ``training`` settings).

    Attributes
    ----------
    channels
        Multiplicity of the hidden irreps (``{channels}x0e`` [+ ``{channels}x1o`` ...]).
    max_L
        Highest angular momentum of the hidden (message) features: 0 is invariant only.
    max_ell
        Highest angular momentum of the edge spherical harmonics.
    correlation
        Body order minus one of each product basis.
    interactions
        Number of message-passing layers.
    n_radial
        Bessel functions of the radial basis.
    polynomial_cutoff
        Exponent of the polynomial cutoff envelope.
    readout_channels
        Width of the nonlinear readout of the last layer (``{readout_channels}x0e``).
    """

    block = "training.mace"

    channels: pydantic.StrictInt = pydantic.Field(16, ge=1)
    max_L: pydantic.StrictInt = pydantic.Field(0, ge=0, le=2)
    max_ell: pydantic.StrictInt = pydantic.Field(2, ge=1, le=3)
    correlation: pydantic.StrictInt = pydantic.Field(2, ge=1, le=3)
    interactions: pydantic.StrictInt = pydantic.Field(2, ge=1, le=3)
    n_radial: pydantic.StrictInt = pydantic.Field(8, ge=1)
    polynomial_cutoff: pydantic.StrictInt = pydantic.Field(5, ge=2)
    readout_channels: pydantic.StrictInt = pydantic.Field(16, ge=1)

    def hidden_irreps(self) -> str:
        """The e3nn irreps string of the hidden features, e.g. ``"16x0e+16x1o"``."""
        parities = ("0e", "1o", "2e")
        return "+".join(f"{self.channels}x{parities[ell]}" for ell in range(self.max_L + 1))

"""The root of the ``aiida-mlip`` command line."""

import click
from aiida.cmdline.params import options, types

from aiida_mlip.cmdline.errors import MlipCommandGroup


@click.group("aiida-mlip", cls=MlipCommandGroup, context_settings={"help_option_names": ["-h", "--help"]})
@options.PROFILE(type=types.ProfileParamType(load_profile=True), expose_value=False)
def cmd_root():
    """Grow machine-learned interatomic potentials by active learning, with AiiDA provenance."""

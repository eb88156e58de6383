"""``aiida-mlip launch --backend``: the backend reaches ``training.backend``; a missing one is refused first."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError

import pytest
from click.testing import CliRunner

from aiida_mlip.cmdline import cmd_root


def test_launch_backend_mace_without_mace_torch_is_refused_before_any_job(
    aiida_profile, tmp_path, monkeypatch
):
    from aiida import orm
    from ase.build import bulk

    from aiida_mlip.potentials.backends import mace_settings

    def missing(name):
        raise PackageNotFoundError(name)

    monkeypatch.setattr(mace_settings, "package_version", missing)
    structure = orm.StructureData(ase=bulk("Al", "fcc", a=4.05, cubic=True)).store()
    before = orm.QueryBuilder().append(orm.ProcessNode).count()
    result = CliRunner().invoke(
        cmd_root, ["launch", str(structure.pk), "--protocol", "fast", "--backend", "mace"]
    )
    assert result.exit_code != 0
    assert "training.backend" in result.output and "pip install 'aiida-mlip[mace]'" in result.output
    assert orm.QueryBuilder().append(orm.ProcessNode).count() == before  # nothing ran


def test_an_initial_potential_of_another_backend_is_refused_at_submission(
    aiida_profile, tmp_path, monkeypatch
):
    """A built-in initial potential with ``training.backend: mace``: refused before any job runs.

    mace-torch is reported installed (its version only: the refusal comes before any MACE code),
    so that the check of the backends is what is tested, here and where mace-torch is absent.
    """
    from aiida import orm
    from aiida.engine import submit
    from ase.build import bulk

    from aiida_mlip.data.potential import PotentialData
    from aiida_mlip.potentials.backends import mace_settings
    from aiida_mlip.potentials.committee import CommitteePotential, save_committee
    from aiida_mlip.workflows.active_learning import ActiveLearningWorkChain

    monkeypatch.setattr(mace_settings, "package_version", lambda name: "0.3.16")
    save_committee(
        CommitteePotential(["Al"], cutoff=4.0, committee_size=2, hidden=4), tmp_path / "model.safetensors"
    )
    potential = PotentialData(file=tmp_path / "model.safetensors").store()
    builder = ActiveLearningWorkChain.get_builder_from_protocol(
        [bulk("Al", "fcc", a=4.05, cubic=True)],
        labeller={"ase": {"calculator": "ase.calculators.emt.EMT"}},
        protocol="fast",
        potential=potential,
        overrides={"training": {"backend": "mace"}},
    )
    before = orm.QueryBuilder().append(orm.ProcessNode).count()
    with pytest.raises(
        ValueError, match="the initial potential is a `builtin` model but training.backend is `mace`"
    ):
        submit(builder)
    assert orm.QueryBuilder().append(orm.ProcessNode).count() == before

"""``aiida-mlip launch --backend``: the backend reaches ``training.backend``; a missing one is refused first."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError

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

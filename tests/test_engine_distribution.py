"""The engine-only distribution ``aiida-mlip-engine`` (engine/pyproject.toml): its wheel and a node without AiiDA.

The wheel is built from this checkout, installed into a fresh virtual environment that sees the
dependencies of this one (torch, ASE, ...) but not its ``aiida_mlip``, and the executables are run
there with ``import aiida`` made to fail.
"""

from __future__ import annotations

import configparser
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import require_component

ROOT = Path(__file__).resolve().parents[1]
ENGINE_PROJECT = ROOT / "engine"
SUBPACKAGES = ("potentials", "selection", "exploration", "engine")
AIIDA_SIDE = ("data", "calculations", "parsers", "workflows", "cmdline")
SCRIPTS = {
    "aiida-mlip-train": "aiida_mlip.engine.train:main",
    "aiida-mlip-explore": "aiida_mlip.engine.explore:main",
    "aiida-mlip-select": "aiida_mlip.engine.select:main",
    "aiida-mlip-label": "aiida_mlip.engine.label:main",
}
ENGINE_DEPENDENCIES = {
    "torch",
    "ase",
    "numpy",
    "scipy",
    "h5py",
    "safetensors",
    "vesin",
    "pyyaml",
    "pydantic",
    "greenlet",
}

# Put first on PYTHONPATH: ``import aiida`` (and any ``aiida.*``) raises ImportError in that interpreter.
BLOCK_AIIDA = '''\
import sys


class _NoAiiDA:
    """Meta-path finder that refuses AiiDA, as on a compute node where it is not installed."""

    def find_spec(self, name, path=None, target=None):
        if name == "aiida" or name.startswith("aiida."):
            raise ImportError(f"{name} is not available on this node (blocked by the test)")
        return None


sys.meta_path.insert(0, _NoAiiDA())
'''


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of engine/, built with the hatchling of this environment (the ``tests`` extra)."""
    require_component(
        importlib.util.find_spec("hatchling") is not None, "hatchling (pip install -e '.[tests]')"
    )
    folder = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(folder)]
        + [str(ENGINE_PROJECT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (found,) = folder.glob("aiida_mlip_engine-*.whl")
    return found


def _dist_info(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (member,) = [entry for entry in archive.namelist() if entry.endswith(f".dist-info/{name}")]
        return archive.read(member).decode()


def test_wheel_holds_only_the_aiida_free_subpackages(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = [name for name in archive.namelist() if ".dist-info/" not in name]
    assert "aiida_mlip/__init__.py" in names
    assert not [name for name in names if name.endswith(".pyc") or "__pycache__" in name]
    top_level = {name.split("/")[1] for name in names}
    assert top_level == {"__init__.py", "settings.py", *SUBPACKAGES}
    for forbidden in AIIDA_SIDE:
        assert not [name for name in names if name.startswith(f"aiida_mlip/{forbidden}/")], forbidden
    # every module of the four subpackages, from the same sources (nothing is copied into engine/)
    sources = {
        path.relative_to(ROOT).as_posix()
        for sub in SUBPACKAGES
        for path in (ROOT / "aiida_mlip" / sub).rglob("*.py")
    }
    assert sources <= set(names)
    with zipfile.ZipFile(wheel) as archive:
        assert (
            archive.read("aiida_mlip/engine/train.py") == (ROOT / "aiida_mlip/engine/train.py").read_bytes()
        )
    assert not list(ENGINE_PROJECT.rglob("*.py"))


def test_metadata_has_no_aiida_and_matches_the_main_distribution(wheel):
    metadata = Parser().parsestr(_dist_info(wheel, "METADATA"))
    import aiida_mlip

    assert metadata["Name"] == "aiida-mlip-engine"
    assert metadata["Version"] == aiida_mlip.__version__
    declared = [Requirement(text) for text in metadata.get_all("Requires-Dist")]
    requirements = [requirement for requirement in declared if requirement.marker is None]
    names = {canonicalize_name(requirement.name) for requirement in requirements}
    assert names == ENGINE_DEPENDENCIES
    # the one extra: the `mace` model backend, as the main distribution's
    extras = {str(requirement) for requirement in declared if requirement.marker is not None}
    assert extras == {'mace-torch<0.4,>=0.3.14; extra == "mace"'}
    assert not [name for name in names if "aiida" in name]
    # the same version ranges as the main distribution declares for these packages
    main = {
        canonicalize_name(requirement.name): requirement.specifier
        for requirement in map(Requirement, importlib.metadata.requires("aiida-mlip") or [])
        if requirement.marker is None
    }
    for requirement in requirements:
        assert requirement.specifier == main[canonicalize_name(requirement.name)], requirement


def test_entry_points_are_the_four_engine_executables(wheel):
    parser = configparser.ConfigParser()
    parser.read_string(_dist_info(wheel, "entry_points.txt"))
    assert parser.sections() == ["console_scripts"]
    assert dict(parser["console_scripts"]) == SCRIPTS
    main = {
        entry.name: entry.value
        for entry in importlib.metadata.distribution("aiida-mlip").entry_points
        if entry.group == "console_scripts"
    }
    assert {name: main[name] for name in SCRIPTS} == SCRIPTS


@pytest.fixture(scope="module")
def node(wheel, tmp_path_factory):
    """A virtual environment with only the engine wheel installed, and the environment of its processes.

    Its site-packages has a ``.pth`` line naming the site-packages of the running environment, so
    torch & co. need no download; that makes AiiDA importable too, hence the import blocker. The
    ``.pth`` files of that directory (the editable install of aiida-mlip among them) are not run.
    """
    base = tmp_path_factory.mktemp("node")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (Path(purelib) / "dependencies-of-the-test-environment.pth").write_text("\n".join(ours) + "\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index"]
        + [str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    blocker = base / "no-aiida"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_AIIDA)
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    environment.update(
        PYTHONPATH=str(blocker), OMP_NUM_THREADS="1", PATH=f"{venv / 'bin'}{os.pathsep}{environment['PATH']}"
    )
    return {"venv": venv, "python": python, "env": environment, "cwd": base}


def _run(node, *command, timeout=120):
    return subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        env=node["env"],
        cwd=node["cwd"],
        timeout=timeout,
    )


def test_all_engine_modules_import_without_aiida(node):
    script = """
import importlib, json, pkgutil, sys
try:
    import aiida
except ImportError:
    pass
else:
    sys.exit("the AiiDA import blocker is not active")
try:
    import aiida_mlip.data
except ModuleNotFoundError:
    pass
else:
    sys.exit("aiida_mlip.data should not be installed")
import aiida_mlip
modules = []
for sub in ("potentials", "selection", "exploration", "engine"):
    package = importlib.import_module(f"aiida_mlip.{sub}")
    for info in pkgutil.walk_packages(package.__path__, f"aiida_mlip.{sub}."):
        importlib.import_module(info.name)
        modules.append(info.name)
print(json.dumps({"file": aiida_mlip.__file__, "modules": modules,
                  "aiida": sorted(name for name in sys.modules if name == "aiida" or name.startswith("aiida."))}))
"""
    run = _run(node, node["python"], "-c", script)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout)
    assert Path(report["file"]).is_relative_to(node["venv"])
    assert (
        "aiida_mlip.engine.train" in report["modules"] and "aiida_mlip.selection.maxvol" in report["modules"]
    )
    assert report["aiida"] == []


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_console_scripts_answer_help_without_aiida(node, script):
    executable = node["venv"] / "bin" / script
    assert executable.is_file()
    run = _run(node, executable, "--help")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "usage:" in run.stdout


def test_tiny_training_runs_without_aiida(node):
    from aiida_mlip.potentials.frames import Frames
    from tests.potentials.emt_data import md_frames

    work = node["cwd"] / "train"
    work.mkdir()
    Frames.from_atoms(md_frames(600, 12, seed=21, interval=3, equilibrate=5)).write_hdf5(work / "dataset.h5")
    (work / "config.yaml").write_text("max_epochs: 2\ncommittee_size: 2\nhidden: 8\nbatch_size: 4\n")
    run = _run(
        node,
        node["python"],
        "-m",
        "aiida_mlip.engine.train",
        "--dataset",
        work / "dataset.h5",
        "--config",
        work / "config.yaml",
        "--output-dir",
        work / "out",
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    for name in ("model.safetensors", "checkpoint.safetensors", "learning_curve.csv", "metrics.json"):
        assert (work / "out" / name).is_file(), name
    metrics = json.loads((work / "out" / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["epochs"] == 2

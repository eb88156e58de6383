"""Bad input is refused before any job runs: one clear line, no traceback, no node left behind.

Each case is an input a user can get wrong, through the command line (``aiida-mlip ...``, run in
process with click's runner) or the Python API. The test asserts the message, that the command line
prints no traceback, and that the number of nodes in the profile is the same before and after
(a cluster file that sets up fine is the one exception: its computer and codes are kept, and the
message says so). ``benchmarks/bad_inputs_table.py`` prints the table of all cases.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from aiida import orm
from ase.build import bulk
from ase.io import write
from click.testing import CliRunner

from aiida_mlip.cmdline import cmd_root

EXAMPLES = Path(__file__).parents[1] / "examples" / "clusters"
#: Where ``benchmarks/bad_inputs_table.py`` collects the rows (one JSON object per line).
TABLE_ENV = "AIIDA_MLIP_BAD_INPUTS_TABLE"


@dataclasses.dataclass
class Case:
    """One bad input: ``cli`` gives the command-line words, ``api`` a call that must raise."""

    name: str
    message: str  # a regular expression the message must match
    cli: Callable | None = None  # (Files) -> list of words after `aiida-mlip`
    api: Callable | None = None  # (Files) -> None, raises
    new_nodes: int = 0  # nodes the case is allowed to leave (a cluster's codes)


class Files:
    """Input files of the cases, written on demand into a temporary folder."""

    def __init__(self, folder: Path, nodes: dict):
        self.folder, self.nodes = folder, nodes

    def text(self, name: str, content: str) -> str:
        path = self.folder / name
        path.write_text(content)
        return str(path)

    def yaml(self, name: str, values) -> str:
        return self.text(name, yaml.safe_dump(values))

    def structure(self, name: str, atoms) -> str:
        path = self.folder / name
        write(path, atoms)
        return str(path)

    def aluminium(self) -> str:
        return self.structure("Al.cif", bulk("Al", "fcc", a=4.05, cubic=True))

    def labelled_extxyz(self, count: int = 3) -> list[str]:
        from ase.calculators.emt import EMT

        images = []
        for seed in range(count):
            atoms = bulk("Al", "fcc", a=4.05, cubic=True)
            atoms.rattle(0.05, seed=seed)
            atoms.calc = EMT()
            atoms.get_forces()
            images.append(atoms)
        path = self.folder / "good.extxyz"
        write(path, images, format="extxyz")
        return path.read_text().splitlines()


def _overlap():
    atoms = bulk("Al", "fcc", a=4.05, cubic=True)
    atoms.positions[1] = atoms.positions[0] + [0.1, 0.0, 0.0]
    return atoms


def _launch(*words, structure=None):
    def build(files: Files) -> list[str]:
        return [
            "launch",
            structure(files) if structure else files.aluminium(),
            "--protocol",
            "fast",
            "--daemon",
            *words,
        ]

    return build


def _overrides(values, name="overrides.yaml"):
    return lambda files: _launch("--overrides", files.yaml(name, values))(files)


def _model_file(files: Files, edit: Callable[[dict], None] | None = None, text: str | None = None) -> str:
    """A model file with its metadata edited (as a JSON object) or replaced (as text)."""
    import struct

    import torch

    from aiida_mlip.potentials.model_file import METADATA_KEY, write_model_file

    path = files.folder / "al.safetensors"
    metadata = {"architecture": "test", "elements": ["Al"], "cutoff": 5.0, "committee_size": 2}
    metadata["hyperparameters"] = {"cutoff": 5.0, "hidden": 8}
    write_model_file(path, {"w": torch.ones(2, 3)}, metadata)
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    if edit is not None:
        values = json.loads(header["__metadata__"][METADATA_KEY])
        edit(values)
        text = json.dumps(values)
    header["__metadata__"][METADATA_KEY] = text
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + raw[8 + size :])
    return str(path)


def _extxyz(edit: Callable[[list[str]], None]):
    def call(files: Files):
        from aiida_mlip.data.dataset import DatasetData

        lines = files.labelled_extxyz()
        edit(lines)
        DatasetData.from_extxyz(files.text("bad.extxyz", "\n".join(lines) + "\n")).store()

    return call


def _set_line(index, text):
    def edit(lines):
        lines[index] = text

    return edit


def _al_builder(files: Files, overrides=None, labeller=None, atoms=None):
    from aiida_mlip.workflows.active_learning import ActiveLearningWorkChain

    return ActiveLearningWorkChain.get_builder_from_protocol(
        [atoms if atoms is not None else bulk("Al", "fcc", a=4.05, cubic=True)],
        labeller=labeller or {"ase": {"calculator": "ase.calculators.emt.EMT"}},
        protocol="fast",
        overrides=overrides,
    )


def _submit_al(**kwargs):
    def call(files: Files):
        from aiida.engine import submit

        submit(_al_builder(files, **kwargs))

    return call


def _submit_edited_builder(block, values):
    def call(files: Files):
        from aiida.engine import submit

        builder = _al_builder(files)
        setattr(builder, block, orm.Dict(values))
        submit(builder)

    return call


def _labelling(atoms, calculator="ase.calculators.emt.EMT"):
    def call(files: Files):
        from aiida.engine import submit

        from aiida_mlip.data.structures import StructureSetData
        from aiida_mlip.workflows.labelling import LabellingWorkChain

        builder = LabellingWorkChain.get_builder()
        builder.structures = StructureSetData.from_atoms([atoms])
        builder.ase.code = orm.load_code(files.nodes["label_code"])
        builder.ase.labeller = orm.Dict({"calculator": calculator})
        submit(builder)

    return call


def _label_calculation(atoms):
    def call(files: Files):
        from aiida.engine import submit

        from aiida_mlip.calculations.label import LabelCalculation
        from aiida_mlip.data.structures import StructureSetData

        builder = LabelCalculation.get_builder()
        builder.code = orm.load_code(files.nodes["label_code"])
        builder.structures = StructureSetData.from_atoms([atoms])
        builder.labeller = orm.Dict({"calculator": "ase.calculators.emt.EMT"})
        submit(builder)

    return call


def _cluster_then_bad_overrides(files: Files) -> list[str]:
    values = yaml.safe_load((EXAMPLES / "hpc-cpu-gpu.yaml").read_text())
    values["computer"]["label"] = f"bad-inputs-cluster-{len(list(files.folder.iterdir()))}"
    cluster = files.yaml("cluster.yaml", values)
    return _launch(
        "--cluster", cluster, "--overrides", files.yaml("o.yaml", {"trust": {"lo": 2.0, "hi": 1.0}})
    )(files)


def _potential_from(edit=None, text=None):
    def call(files: Files):
        from aiida_mlip.data.potential import PotentialData

        PotentialData(file=_model_file(files, edit=edit, text=text))

    return call


def _al_protocol(files: Files):
    from aiida_mlip.workflows.active_learning import ActiveLearningWorkChain

    ActiveLearningWorkChain.get_protocol_inputs("sloppy")


def _silicon():
    return bulk("Si", "diamond", a=5.43)


CASES = [
    # ------------------------------------------------------------------ command line: structures
    Case(
        "garbage CIF",
        r"cannot read structures from .*garbage\.cif: not a valid CIF file \(ASE's reader raised AssertionError\)",
        cli=_launch(structure=lambda f: f.text("garbage.cif", "this is not a cif\nat all\n")),
    ),
    Case(
        "empty CIF",
        r"cannot read structures from .*empty\.cif: Empty file",
        cli=_launch(structure=lambda f: f.text("empty.cif", "")),
    ),
    Case(
        "neither file nor pk",
        r"nope\.cif is neither a StructureData pk nor a file",
        cli=_launch(structure=lambda f: "nope.cif"),
    ),
    Case(
        "unknown StructureData pk",
        r"Invalid value for STRUCTURES: no node with pk 987654321",
        cli=_launch(structure=lambda f: "987654321"),
    ),
    Case(
        "pk of a Dict",
        r"Invalid value for STRUCTURES: node <\d+> is a Dict, not a StructureData",
        cli=_launch(structure=lambda f: str(f.nodes["dict"])),
    ),
    Case(
        "EMT asked for Si (CLI)",
        r"refused: .*cannot label Si .*No EMT-potential for Si",
        cli=_launch(structure=lambda f: f.structure("Si.cif", _silicon())),
    ),
    Case(
        "atoms 0.1 Angstrom apart (CLI)",
        r"refused: .*frame 0: atoms 0 and 1 are 0\.100 Angstrom apart",
        cli=_launch(structure=lambda f: f.structure("overlap.extxyz", _overlap())),
    ),
    # ------------------------------------------------------------------ command line: options
    Case(
        "unknown protocol",
        r"Invalid value for '--protocol': 'sloppy' is not one of",
        cli=lambda f: ["launch", f.aluminium(), "--protocol", "sloppy"],
    ),
    Case(
        "broken JSON in ase: kwargs",
        r"Invalid value for --labeller: the keyword arguments after 'ase\.calculators\.emt\.EMT' are not valid JSON",
        cli=_launch("--labeller", "ase:ase.calculators.emt.EMT:{bad"),
    ),
    Case(
        "ase: kwargs not an object",
        r"Invalid value for --labeller: .*must be a JSON object, got list",
        cli=_launch("--labeller", "ase:ase.calculators.emt.EMT:[1]"),
    ),
    Case(
        "unknown calculator module",
        r"refused: .*cannot import module 'nowhere\.calc'",
        cli=_launch("--labeller", "ase:nowhere.calc.Calculator"),
    ),
    Case(
        "unknown labeller",
        r"Invalid value for --labeller: unknown labeller 'vasp'",
        cli=_launch("--labeller", "vasp"),
    ),
    Case(
        "pw without code and family",
        r"--labeller pw needs --pw-code and --pseudo-family",
        cli=_launch("--labeller", "pw"),
    ),
    Case(
        "unknown --pw-code",
        r"Invalid value for --pw-code: no code 'pw@nowhere'",
        cli=_launch("--labeller", "pw", "--pw-code", "pw@nowhere", "--pseudo-family", "debian/pbe"),
    ),
    Case(
        "unknown pseudo family",
        r"Invalid value for --pseudo-family: no pseudopotential family 'no/such-family' is installed",
        cli=lambda f: _launch(
            "--labeller", "pw", "--pw-code", f.nodes["pw_code"], "--pseudo-family", "no/such-family"
        )(f),
    ),
    Case(
        "overrides file missing",
        r"Invalid value for '--overrides': File 'missing\.yaml' does not exist",
        cli=_launch("--overrides", "missing.yaml"),
    ),
    Case(
        "malformed overrides YAML",
        r"Invalid value for --overrides: .*broken\.yaml is not valid YAML: .*\(line 3, column 5\)",
        cli=lambda f: _launch("--overrides", f.text("broken.yaml", "trust:\n  lo: [0.1\n  hi: 1.0\n"))(f),
    ),
    Case(
        "overrides is a list",
        r"Invalid value for --overrides: .*list\.yaml holds a YAML list, not a mapping",
        cli=_overrides([1, 2], "list.yaml"),
    ),
    Case(
        "overrides is a scalar",
        r"Invalid value for --overrides: .*scalar\.yaml holds a YAML number, not a mapping",
        cli=_overrides(3, "scalar.yaml"),
    ),
    Case(
        "trust lo >= hi",
        r"refused: `trust`: the trust window needs lo < hi, got lo=0\.5, hi=0\.1 .*\(settings from --overrides",
        cli=_overrides({"trust": {"lo": 0.5, "hi": 0.1}}),
    ),
    Case(
        "negative temperature",
        r"refused: exploration schedule entry 0: .*temperature must be non-negative",
        cli=_overrides({"exploration": {"schedule": [{"temperatures": [-10]}]}}),
    ),
    Case(
        "Miller index of zeros",
        r"refused: `exploration\.generate\.surfaces\.miller`: the Miller index \[0, 0, 0\] is all zeros",
        cli=_overrides({"exploration": {"generate": {"surfaces": {"miller": [[0, 0, 0]]}}}}),
    ),
    Case(
        "slab thinner than the cutoff",
        r"refused: `exploration\.generate\.surfaces\.thickness`: 3\.0 A is under the committee's cutoff \(5\.0 A\)",
        cli=_overrides({"exploration": {"generate": {"surfaces": {"thickness": 3.0}}}}),
    ),
    Case(
        "vacuum under the cutoff",
        r"refused: `exploration\.generate\.surfaces\.vacuum`: 2\.0 A is under the committee's cutoff",
        cli=_overrides({"exploration": {"generate": {"surfaces": {"vacuum": 2.0}}}}),
    ),
    Case(
        "bias strength below zero",
        r"refused: exploration schedule entry 0: `exploration\.md\.bias\.strength`: the bias strength must be zero or positive",
        cli=_overrides({"exploration": {"md": {"bias": {"strength": -1.0}}}}),
    ),
    Case(
        "path-integral walkers under npt",
        r"refused: exploration schedule entry 0: .*path_integral walkers run nvt \(the PILE-L thermostat\), not npt",
        cli=_overrides({"exploration": {"md": {"ensemble": "npt", "path_integral": {"beads": 8}}}}),
    ),
    Case(
        "path integral of zero beads",
        r"refused: exploration schedule entry 0: `exploration\.md\.path_integral\.beads`",
        cli=_overrides({"exploration": {"md": {"path_integral": {"beads": 0}}}}),
    ),
    Case(
        "unknown strategy",
        r"refused: `selection\.strategy`: unknown strategy 'nope'",
        cli=_overrides({"selection": {"strategy": "nope"}}),
    ),
    Case(
        "max_iterations 0",
        r"refused: `convergence\.max_iterations`: Input should be greater than or equal to 1",
        cli=_overrides({"convergence": {"max_iterations": 0}}),
    ),
    Case(
        "overrides: trsut (CLI)",
        r"refused: unknown key `trsut`; did you mean `trust`\? \(settings from --overrides",
        cli=_overrides({"trsut": {"lo": 0.1}}),
    ),
    Case(
        "overrides: trust.low (CLI)",
        r"refused: unknown key `trust\.low`; did you mean `lo`\?",
        cli=_overrides({"trust": {"low": 0.1}}),
    ),
    Case(
        "overrides: convergence.max_iteration (CLI)",
        r"refused: unknown key `convergence\.max_iteration`; did you mean `max_iterations`\?",
        cli=_overrides({"convergence": {"max_iteration": 3}}),
    ),
    Case(
        "overrides: selection.budgt (CLI)",
        r"refused: unknown key `selection\.budgt`; did you mean `budget`\?",
        cli=_overrides({"selection": {"budgt": 3}}),
    ),
    Case(
        "overrides: schedule entry typo (CLI)",
        r"refused: unknown key `exploration\.schedule\.0\.temprature`; did you mean `temperatures`\?",
        cli=_overrides({"exploration": {"schedule": [{"temprature": [300]}]}}),
    ),
    Case(
        "overrides: ramp needing a thermostat (CLI)",
        r"refused: exploration schedule entry 0: .*a temperature ramp needs a thermostat",
        cli=_overrides(
            {"exploration": {"md": {"ensemble": "nve"}, "schedule": [{"temperatures": [[300, 600]]}]}}
        ),
    ),
    Case(
        "cluster file not a mapping",
        r"Invalid value for --cluster: .*c\.yaml must be a mapping, not list",
        cli=lambda f: _launch("--cluster", f.yaml("c.yaml", [1, 2]))(f),
    ),
    Case(
        "cluster sets up, then bad overrides",
        r"refused: `trust`: the trust window needs lo < hi.* \(the computer and codes set up from .*cluster\.yaml are kept: "
        r"mlip-explore@bad-inputs-cluster",
        cli=_cluster_then_bad_overrides,
        new_nodes=5,
    ),
    # ------------------------------------------------------------------ command line: other commands
    Case(
        "potential export of a Dict",
        r"Invalid value for 'POTENTIAL'",
        cli=lambda f: ["potential", "export", str(f.nodes["dict"]), str(f.folder / "x.safetensors")],
    ),
    Case(
        "lineage of a Dict", r"Invalid value for 'POTENTIAL'", cli=lambda f: ["lineage", str(f.nodes["dict"])]
    ),
    Case(
        "dataset export to .txt",
        r"Invalid value for PATH: .*out\.txt: unknown format '\.txt'",
        cli=lambda f: ["dataset", "export", str(f.nodes["dataset"]), str(f.folder / "out.txt")],
    ),
    # ------------------------------------------------------------------ API: datasets
    Case(
        "extxyz atom count too large",
        r"bad\.extxyz: frame 1 declares 9 atoms but line 13",
        api=_extxyz(_set_line(6, "9")),
    ),
    Case(
        "extxyz 0 frames",
        r"bad\.extxyz: no configurations \(the file holds no frames\)",
        api=_extxyz(lambda lines: lines.clear()),
    ),
    Case(
        "extxyz 0-atom frame",
        r"bad\.extxyz: frame 0 has no atoms",
        api=_extxyz(
            lambda lines: lines.__setitem__(
                slice(0, 6),
                ["0", 'Lattice="4 0 0 0 4 0 0 0 4" Properties=species:S:1:pos:R:3 energy=1.0 pbc="T T T"'],
            )
        ),
    ),
    Case(
        "extxyz NaN energy",
        r"bad\.extxyz: energy of frame 0 is nan",
        api=_extxyz(
            lambda lines: lines.__setitem__(1, re.sub(r" (free_)?energy=\S+", "", lines[1]) + " energy=nan")
        ),
    ),
    Case(
        "extxyz without forces",
        r"bad\.extxyz: frame 0 has no forces label",
        api=_extxyz(
            lambda lines: lines.__setitem__(
                slice(1, 6),
                [lines[1].replace(":forces:R:3", "")] + [" ".join(line.split()[:-3]) for line in lines[2:6]],
            )
        ),
    ),
    Case(
        "extxyz flat cell",
        r"bad\.extxyz: cell of frame 0 is degenerate",
        api=_extxyz(
            lambda lines: lines.__setitem__(
                1, re.sub(r'Lattice="[^"]*"', 'Lattice="4 0 0 4 0 0 0 0 4"', lines[1])
            )
        ),
    ),
    # ------------------------------------------------------------------ API: model files
    Case(
        "model file: hyperparameters.cutoff edited",
        r"al\.safetensors: metadata field `hyperparameters\.cutoff` does not match the digest",
        api=_potential_from(edit=lambda m: m["hyperparameters"].update(cutoff=4.0)),
    ),
    Case(
        "model file: elements edited",
        r"al\.safetensors: metadata field `elements` does not match the digest",
        api=_potential_from(edit=lambda m: m.update(elements=["Cu"])),
    ),
    Case(
        "model file: broken metadata JSON",
        r"al\.safetensors: the metadata is not valid JSON",
        api=_potential_from(text='{"format": '),
    ),
    # ------------------------------------------------------------------ API: labellers
    Case(
        "LabelCalculation: EMT asked for Si",
        r"cannot label Si .*No EMT-potential for Si",
        api=_label_calculation(_silicon()),
    ),
    Case(
        "LabellingWorkChain: atoms 0.1 Angstrom apart",
        r"frame 0: atoms 0 and 1 are 0\.100 Angstrom apart",
        api=_labelling(_overlap()),
    ),
    Case("LabellingWorkChain: EMT asked for Si", r"No EMT-potential for Si", api=_labelling(_silicon())),
    Case(
        "ActiveLearningWorkChain: EMT asked for Si",
        r"ase labeller: invalid labeller: calculator ase\.calculators\.emt\.EMT cannot label Si",
        api=_submit_al(atoms=_silicon()),
    ),
    Case("ActiveLearningWorkChain: unknown protocol", r"unknown protocol 'sloppy'", api=_al_protocol),
    # ------------------------------------------------------------------ API: settings
    Case(
        "API overrides: trsut",
        r"unknown key `trsut`; did you mean `trust`\?",
        api=_submit_al(overrides={"trsut": {}}),
    ),
    Case(
        "API overrides: selection.budgt",
        r"unknown key `selection\.budgt`; did you mean `budget`\?",
        api=_submit_al(overrides={"selection": {"budgt": 4}}),
    ),
    Case(
        "API overrides: a list",
        r"the overrides must be a mapping of settings blocks .*got a list",
        api=_submit_al(overrides=[1]),
    ),
    Case(
        "API overrides: warm_start_parameters typo",
        r"unknown key `warm_start_parameters\.lrr`; did you mean `lr`\?",
        api=_submit_al(overrides={"warm_start_parameters": {"lrr": 0.1}}),
    ),
    Case(
        "API overrides: training typo",
        r"unknown key `training\.hiden`; did you mean `hidden`\?",
        api=_submit_al(overrides={"training": {"hiden": 8}}),
    ),
    Case(
        "API builder: trust.low set on the builder",
        r"unknown key `trust\.low`; did you mean `lo`\?",
        api=_submit_edited_builder("trust", {"lo": 0.1, "hi": 1.0, "low": 0.2}),
    ),
]


@pytest.fixture(scope="module")
def nodes(aiida_profile):
    """Nodes the cases refer to, and the localhost engine codes, made once before any count."""
    from aiida_mlip.codes import get_or_create_localhost, register_engine_codes
    from aiida_mlip.data.dataset import DatasetData
    from tests.data.test_dataset import emt_frames

    computer = get_or_create_localhost()
    codes = register_engine_codes(computer, log=lambda *_: None)
    pw = orm.InstalledCode(
        computer=computer,
        filepath_executable="/usr/bin/pw.x",
        default_calc_job_plugin="quantumespresso.pw",
        label="pw-bad-inputs",
    ).store()
    return {
        "dict": orm.Dict({"not": "a structure"}).store().pk,
        "dataset": DatasetData(emt_frames(1)).store().pk,
        "label_code": codes["mlip.label"].pk,
        "pw_code": pw.full_label,
    }


def _count() -> int:
    return orm.QueryBuilder().append(orm.Node).count()


def _record(case: Case, message: str, before: int, after: int) -> None:
    path = os.environ.get(TABLE_ENV)
    if path:
        with open(path, "a") as handle:
            row = {"input": case.name, "via": "CLI" if case.cli else "API", "message": message}
            handle.write(json.dumps(dict(row, nodes_before=before, nodes_after=after)) + "\n")


def test_there_are_at_least_thirty_cases():
    assert len(CASES) >= 30
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_refused_before_any_job(case, nodes, tmp_path):
    files = Files(tmp_path, nodes)
    before = _count()
    if case.cli is not None:
        words = case.cli(files)
        result = CliRunner().invoke(cmd_root, words)
        message = result.output.strip()
        assert result.exit_code != 0, message
        assert "Traceback" not in message
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        # click's usage errors print the usage and a hint before the one line with the error
        error_lines = [line for line in message.splitlines() if re.match(r"(Error|Critical):", line)]
        assert len(error_lines) == 1, message
        message = error_lines[0]
    else:
        with pytest.raises(ValueError) as info:
            case.api(files)
        message = " ".join(str(info.value).split())
    assert re.search(case.message, message), message
    after = _count()
    _record(case, message, before, after)
    assert after == before + case.new_nodes, message

"""What the CalcJobs of aiida-mlip share: running one engine executable on files they upload."""

from __future__ import annotations

import json

from aiida.common.datastructures import CalcInfo, CodeInfo
from aiida.engine import CalcJob
from aiida.orm import Node

__all__ = ("EngineCalculation",)


class EngineCalculation(CalcJob):
    """A CalcJob that runs an ``aiida-mlip-*`` executable: files in, files out.

    Every input file is uploaded from the AiiDA repository or written into the submission folder,
    so the job works on a remote cluster exactly as on ``localhost``: nothing reads the remote work
    directory through the local file system. Subclasses implement :meth:`write_inputs`, which fills
    the folder, names what to copy and returns the executable's command-line arguments, and set
    ``RETRIEVE`` (the files the parser reads).
    """

    RETRIEVE: tuple[str, ...] = ()
    STDOUT = "aiida.out"
    #: What the job does, for the shared exit messages ("The training refused its input: ...").
    ACTION = "The job"
    #: The message of exit code 300, when the executable left none of the outputs its parser needs.
    MISSING_OUTPUT = "wrote none of its outputs"

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.inputs["metadata"]["options"]["resources"].default = {
            "num_machines": 1,
            "num_mpiprocs_per_machine": 1,
        }
        spec.inputs["metadata"]["options"]["output_filename"].default = cls.STDOUT
        spec.inputs["metadata"]["options"]["withmpi"].default = False
        # the two exit codes every engine CalcJob shares (the executable's own go from 302 on)
        spec.exit_code(300, "ERROR_MISSING_OUTPUT", message=f"{cls.ACTION} {cls.MISSING_OUTPUT}.")
        spec.exit_code(301, "ERROR_BAD_INPUT", message=f"{cls.ACTION} refused its input: {{message}}")

    def write_inputs(self, folder, local_copy_list: list) -> list[str]:
        """Write input files into ``folder``, append repository copies; return the command-line arguments."""
        raise NotImplementedError

    @staticmethod
    def copy_from_repository(node: Node, filename: str, target: str) -> tuple[str, str, str]:
        """Return the ``local_copy_list`` entry that uploads ``filename`` of ``node``'s repository as ``target``."""
        return (node.uuid, filename, target)

    def upload_training_set(self, local_copy_list: list, arguments: list[str]) -> None:
        """Upload the optional ``training_set`` input as ``training.h5`` and pass ``--training`` for it."""
        if "training_set" in self.inputs:
            training = self.inputs.training_set
            local_copy_list.append(self.copy_from_repository(training, training.FILENAME, "training.h5"))
            arguments += ["--training", "training.h5"]

    @staticmethod
    def write_json(folder, filename: str, content: dict) -> None:
        with folder.open(filename, "w", encoding="utf8") as handle:
            json.dump(content, handle, indent=1, sort_keys=True)

    def prepare_for_submission(self, folder):
        local_copy_list: list = []
        codeinfo = CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = self.write_inputs(folder, local_copy_list)
        codeinfo.stdout_name = self.STDOUT
        codeinfo.stderr_name = "aiida.err"
        calcinfo = CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.local_copy_list = local_copy_list
        calcinfo.retrieve_list = [self.STDOUT, "aiida.err", *self.RETRIEVE]
        return calcinfo

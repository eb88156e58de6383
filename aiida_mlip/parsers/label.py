"""Parser of ``LabelCalculation``."""

from __future__ import annotations

from aiida import orm

from aiida_mlip.data.dataset import DatasetData
from aiida_mlip.parsers.base import EngineParser
from aiida_mlip.potentials.frames import Frames

__all__ = ("LabelParser",)


class LabelParser(EngineParser):
    """Attach the labelled frames, the failures and the summary written by ``aiida-mlip-label``."""

    def parse(self, **kwargs):
        if "summary.json" not in self.names:
            message = self.bad_input_message()
            if message and "bad input" in message:
                return self.exit_codes.ERROR_BAD_INPUT.format(message=message)
            return self.exit_codes.ERROR_MISSING_OUTPUT
        failures = self.json("failures.json")
        self.out("summary", orm.Dict(self.json("summary.json")))
        if failures:
            self.out("failures", orm.Dict({"failures": failures}))
        if "labelled.h5" not in self.names:
            return self.exit_codes.ERROR_ALL_LABELS_FAILED
        with self.as_path("labelled.h5") as path:
            frames = Frames.read_hdf5(path)
        frames.source_uuid[:] = self.node.uuid
        labeller = self.node.inputs.labeller.get_dict()
        settings = {
            "method": "ase",
            "calculator": labeller["calculator"],
            "kwargs": labeller.get("kwargs", {}),
        }
        self.out("labelled", DatasetData(frames, label_settings=settings))
        if failures:
            return self.exit_codes.ERROR_SOME_LABELS_FAILED.format(count=len(failures))
        return None

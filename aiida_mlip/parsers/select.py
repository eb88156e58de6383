"""Parser of ``SelectCalculation``."""

from __future__ import annotations

from aiida import orm

from aiida_mlip.data.structures import StructureSetData
from aiida_mlip.parsers.base import EngineParser
from aiida_mlip.potentials.frames import Frames

__all__ = ("SelectParser",)


class SelectParser(EngineParser):
    """Attach the selected configurations and the selection record."""

    def parse(self, **kwargs):
        if "selection.json" not in self.names:
            message = self.bad_input_message()
            if message:
                return self.exit_codes.ERROR_BAD_INPUT.format(message=message)
            return self.exit_codes.ERROR_MISSING_OUTPUT
        self.out("selection", orm.Dict(self.json("selection.json")))
        if "selected.h5" in self.names:
            with self.as_path("selected.h5") as path:
                frames = Frames.read_hdf5(path)
            if len(frames):
                self.out("selected", StructureSetData(frames))
        return None

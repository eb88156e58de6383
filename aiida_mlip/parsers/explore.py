"""Parser of ``ExploreCalculation``."""

from __future__ import annotations

from aiida import orm

from aiida_mlip.data.structures import StructureSetData
from aiida_mlip.parsers.base import EngineParser, csv_to_arraydata
from aiida_mlip.potentials.frames import Frames

__all__ = ("ExploreParser",)


class ExploreParser(EngineParser):
    """Attach the candidates (with their scores), the per-frame table, the trajectory and the summary."""

    def parse(self, **kwargs):
        names = self.names
        if "summary.json" not in names:
            message = self.bad_input_message()
            if message:
                return self.exit_codes.ERROR_BAD_INPUT.format(message=message)
            return self.exit_codes.ERROR_MISSING_OUTPUT
        summary = self.json("summary.json")
        self.out("summary", orm.Dict(summary))
        if "frames.csv" in names:
            self.out("frames", csv_to_arraydata(self.text("frames.csv")))
        if "trajectory.extxyz" in names:
            with self.as_path("trajectory.extxyz") as path:
                self.out("trajectory", orm.SinglefileData(path))
        if "candidates.h5" in names:
            with self.as_path("candidates.h5") as path:
                frames = Frames.read_hdf5(path)
            if len(frames):
                candidates = StructureSetData(frames)
                if "candidates.csv" in names:
                    with self.as_path("candidates.csv") as path:
                        candidates.set_scores_file(path)
                self.out("candidates", candidates)
        if summary.get("all_exploded_before_first_frame"):
            return self.exit_codes.ERROR_ALL_WALKERS_EXPLODED
        return None

"""What the parsers of the engine executables share."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
from aiida import orm
from aiida.parsers import Parser

__all__ = ("EngineParser", "csv_to_arraydata")


def csv_to_arraydata(text: str) -> orm.ArrayData:
    """One float array per column of a CSV table (non-numbers become NaN)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    arrays = orm.ArrayData()
    header = next(csv.reader(io.StringIO(text)), [])
    for column in header:
        values = []
        for row in rows:
            try:
                values.append(float(row[column]))
            except (TypeError, ValueError):
                values.append(np.nan)
        arrays.set_array(
            column.strip().replace(" ", "_").replace("/", "_per_"), np.array(values, dtype=float)
        )
    return arrays


class EngineParser(Parser):
    """A parser with helpers to read the files an ``aiida-mlip-*`` executable left."""

    @property
    def names(self) -> set[str]:
        return set(self.retrieved.base.repository.list_object_names())

    def text(self, name: str) -> str:
        return self.retrieved.base.repository.get_object_content(name)

    def json(self, name: str):
        return json.loads(self.text(name))

    def as_path(self, name: str):
        """Context manager: a local path to the retrieved file ``name``."""
        return self.retrieved.base.repository.as_path(name)

    def cancelled_by_scheduler(self) -> bool:
        """Whether the scheduler's stderr says the job was cancelled (SLURM: ``*** JOB n ... CANCELLED AT``)."""
        try:
            stderr = self.node.get_scheduler_stderr() or ""
        except (OSError, KeyError, AttributeError):
            return False
        return "CANCELLED" in stderr

    def bad_input_message(self) -> str | None:
        """The last line the executable wrote to stderr (where it explains refused input), else None."""
        if "aiida.err" not in self.names:
            return None
        lines = self.text("aiida.err").strip().splitlines()
        return lines[-1] if lines else None

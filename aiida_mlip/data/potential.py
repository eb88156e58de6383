"""``PotentialData``: a committee potential file stored in the AiiDA repository."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator

from aiida.orm import Data

from aiida_mlip.potentials.backends import backend_of, get_backend
from aiida_mlip.potentials.model_file import ModelFileError, file_sha256, read_model_file

__all__ = ("PotentialData",)


class PotentialData(Data):
    """A committee of interatomic potentials as one model file, with its identity in attributes.

    The file (see :mod:`aiida_mlip.potentials.model_file`) is kept in the node's repository. The
    attributes make potentials queryable: ``model_backend`` (``"builtin"``, ``"mace"``: see
    :mod:`aiida_mlip.potentials.backends`), ``model_backend_version``, ``architecture``, ``elements`` (chemical symbols), ``cutoff``
    (Angstrom), ``committee_size``, ``training_set_uuid`` (the ``DatasetData`` it was trained on, or
    ``None``), ``format_version`` and ``sha256`` (of the file). The sha256 is checked every time the
    file is read back: a file changed behind AiiDA's back is refused.

    Parameters
    ----------
    file
        Path of a model file written by :func:`aiida_mlip.potentials.model_file.write_model_file`.
    training_set_uuid
        Overrides the training-set UUID recorded in the file's metadata.

    Examples
    --------
    >>> potential = PotentialData(file="model.safetensors").store()    # doctest: +SKIP
    >>> atoms.calc = potential.get_calculator(device="auto")            # doctest: +SKIP
    """

    FILENAME = "potential.safetensors"

    def __init__(self, file: str | os.PathLike | None = None, training_set_uuid: str | None = None, **kwargs):
        super().__init__(**kwargs)
        if file is not None:
            self.set_file(file, training_set_uuid=training_set_uuid)

    @classmethod
    def from_parent_model(cls, path: str | os.PathLike, backend: str | None = None) -> PotentialData:
        """An unstored node of a parent model file to fine-tune from (``training.parent_model``).

        A model file of this package is stored as it is; a mace-torch ``*.model`` is converted into
        a one-member MACE committee file first (:func:`~aiida_mlip.potentials.parent_model.write_parent_model`),
        so that the node, and every job that reads it, holds no pickle.

        Raises
        ------
        ParentModelError
            For a file that is missing, unreadable, or (with ``backend``) of another backend.
        """
        from aiida_mlip.potentials.parent_model import parent_backend, write_parent_model

        backend = backend or parent_backend(path)
        with tempfile.TemporaryDirectory() as folder:
            return cls(file=write_parent_model(path, backend, pathlib.Path(folder) / cls.FILENAME))

    def set_file(self, file: str | os.PathLike, training_set_uuid: str | None = None) -> None:
        """Store the model file in the repository and record its metadata as attributes.

        Raises
        ------
        ModelFileError
            If the file is not a model file or its weights do not match their recorded digest.
        """
        _, metadata = read_model_file(file, verify=True)
        try:
            backend = backend_of(metadata)
            version = get_backend(backend).version_of(metadata)
        except (ModelFileError, ValueError):  # an architecture no backend reads: stored, not loadable here
            backend = version = None
        sha256 = file_sha256(file)
        self.base.repository.put_object_from_file(os.fspath(file), self.FILENAME)
        attributes = {
            "model_backend": backend,
            "model_backend_version": version,
            "architecture": metadata["architecture"],
            "elements": list(metadata["elements"]),
            "cutoff": float(metadata["cutoff"]),
            "committee_size": int(metadata["committee_size"]),
            "format_version": int(metadata["format_version"]),
            "training_set_uuid": training_set_uuid or metadata.get("training_set_uuid"),
            "sha256": sha256,
        }
        if "checkpoint_epoch" in metadata:  # a training checkpoint: the last epoch it finished
            attributes["checkpoint_epoch"] = int(metadata["checkpoint_epoch"])
        for key, value in attributes.items():
            self.base.attributes.set(key, value)

    # ------------------------------------------------------------------ attributes
    @property
    def model_backend(self) -> str | None:
        """The model backend that wrote the file (``"builtin"`` for nodes stored before backends existed,
        ``None`` for an architecture no backend reads).

        (Not ``backend``: that is the node's storage backend in AiiDA.)
        """
        return self.base.attributes.get("model_backend", "builtin")

    @property
    def model_backend_version(self) -> str | None:
        """Version of the backend's code that wrote the file (mace-torch's for ``mace``)."""
        return self.base.attributes.get("model_backend_version", None)

    @property
    def architecture(self) -> str:
        return self.base.attributes.get("architecture")

    @property
    def elements(self) -> list[str]:
        return self.base.attributes.get("elements")

    @property
    def cutoff(self) -> float:
        """Cutoff radius in Angstrom."""
        return self.base.attributes.get("cutoff")

    @property
    def committee_size(self) -> int:
        return self.base.attributes.get("committee_size")

    @property
    def training_set_uuid(self) -> str | None:
        return self.base.attributes.get("training_set_uuid")

    @property
    def checkpoint_epoch(self) -> int | None:
        """For a training checkpoint, the last epoch it holds (0: the starting weights); else ``None``."""
        return self.base.attributes.get("checkpoint_epoch", None)

    @property
    def sha256(self) -> str:
        return self.base.attributes.get("sha256")

    # ------------------------------------------------------------------ file access
    @contextlib.contextmanager
    def as_path(self) -> Iterator[pathlib.Path]:
        """Yield a path to the model file after checking its sha256 against the recorded one.

        Raises
        ------
        ModelFileError
            If the bytes in the repository no longer match the ``sha256`` attribute.
        """
        with self.base.repository.as_path(self.FILENAME) as path:
            found = file_sha256(path)
            if found != self.sha256:
                raise ModelFileError(
                    f"the potential file of node {self.pk or 'unstored'} has been tampered with: "
                    f"expected sha256 {self.sha256}, found {found}"
                )
            yield pathlib.Path(path)

    def verify(self) -> None:
        """Check the stored file against its sha256 and its weights against their digest."""
        with self.as_path() as path:
            read_model_file(path, verify=True)

    def export(self, path: str | os.PathLike, overwrite: bool = False) -> pathlib.Path:
        """Write the model file to ``path``; it loads without AiiDA through ``load_calculator``.

        Raises
        ------
        FileExistsError
            If ``path`` exists and ``overwrite`` is false.
        """
        path = pathlib.Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
        with self.as_path() as source, open(source, "rb") as reader:
            with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as handle:
                shutil.copyfileobj(reader, handle)
            os.replace(handle.name, path)
        return path

    def get_calculator(self, device: str = "auto", **kwargs):
        """Return an ASE calculator of the committee (see :func:`aiida_mlip.potentials.load_calculator`).

        Parameters
        ----------
        device
            ``"auto"`` (CUDA when present, else CPU), ``"cpu"`` or ``"cuda"``.
        **kwargs
            Passed on to the calculator (e.g. ``spread_every``).
        """
        from aiida_mlip.potentials import load_calculator

        with self.as_path() as path:
            return load_calculator(path, device=device, **kwargs)

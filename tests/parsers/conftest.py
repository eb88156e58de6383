"""Build a finished-looking CalcJobNode with recorded output files, to run a parser on."""

import io

import pytest
from aiida import orm
from aiida.common.links import LinkType

from tests.calculations.conftest import aluminium_dataset, tiny_model_file  # noqa: F401


@pytest.fixture
def recorded_calculation(aiida_localhost):
    """``factory(entry_point, inputs, files) -> CalcJobNode`` with ``files`` (name -> bytes/str) as ``retrieved``."""

    def factory(entry_point: str, inputs: dict, files: dict):
        node = orm.CalcJobNode(computer=aiida_localhost, process_type=f"aiida.calculations:{entry_point}")
        node.set_option("resources", {"num_machines": 1})
        for label, value in inputs.items():
            node.base.links.add_incoming(value, link_type=LinkType.INPUT_CALC, link_label=label)
        node.store()
        retrieved = orm.FolderData()
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            retrieved.base.repository.put_object_from_filelike(io.BytesIO(data), name)
        retrieved.base.links.add_incoming(node, link_type=LinkType.CREATE, link_label="retrieved")
        retrieved.store()
        return node

    return factory

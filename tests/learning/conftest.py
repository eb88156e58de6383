import pytest

from tests.exploration.al_committee import committee_files


@pytest.fixture(scope="session")
def al_committee(tmp_path_factory):
    """Paths of the 300 K aluminium committee and its training set (trained once per session)."""
    return committee_files(tmp_path_factory.getbasetemp() / "al_committee")

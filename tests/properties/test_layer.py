"""The property kernels are science below the line: no module of ``aiida_mlip.properties`` imports AiiDA."""

from __future__ import annotations

from tests.test_import_layers import PACKAGE, imported_modules


def test_no_aiida_import():
    offenders = {
        str(path.relative_to(PACKAGE.parent)): sorted(
            name for name in imported_modules(path) if name.split(".")[0] == "aiida"
        )
        for path in sorted((PACKAGE / "properties").glob("*.py"))
    }
    assert {path: names for path, names in offenders.items() if names} == {}
    assert len(offenders) >= 10

"""The library never imports the command line: ``aiida_mlip.cmdline`` is imported only from ``cmdline/``."""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).parents[1] / "aiida_mlip"


def imported_modules(path: pathlib.Path) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved against the package)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_no_module_outside_cmdline_imports_the_command_line():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "cmdline" in path.relative_to(PACKAGE).parts:
            continue
        bad = sorted(name for name in imported_modules(path) if name.startswith("aiida_mlip.cmdline"))
        if bad:
            offenders[str(path.relative_to(PACKAGE.parent))] = bad
    assert offenders == {}


def test_the_scan_sees_imports_inside_functions():
    """The check above would catch ``from aiida_mlip.cmdline.setup import x`` in a function body."""
    source = PACKAGE / "cmdline" / "setup_qe.py"
    assert "aiida_mlip.cmdline.setup" in imported_modules(source)
    assert "aiida_mlip.codes.register_pw_code" in imported_modules(source)

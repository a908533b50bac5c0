"""Dependencies point one way: formats -> Network -> binding (STYLE.md). Checked on the
source's import statements, so that a cycle or a file format inside Network fails here: the
package's own files wherever it is imported from (the source tree or an installed wheel)."""

from __future__ import annotations

import ast
from pathlib import Path

import mlpinfer

PACKAGE = Path(mlpinfer.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """mlpinfer modules that ``path`` imports, at module level or inside functions."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if not target.startswith("mlpinfer"):
                continue
            if node.module:  # "from . import x" imports the submodules x, not the package
                found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names if _is_module(f"{target}.{a.name}"))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("mlpinfer"))
    return found


def _is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").exists() or (PACKAGE / relative / "__init__.py").exists()


GRAPH = {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def _reaches(start: str, goal: str) -> bool:
    seen, stack = set(), [start]
    while stack:
        module = stack.pop()
        for target in GRAPH.get(module, ()):
            if target == goal:
                return True
            if target not in seen and target != "mlpinfer":  # the package's own __init__
                seen.add(target)
                stack.append(target)
    return False


def test_network_knows_no_file_format():
    imports = GRAPH["mlpinfer._network"]
    assert not {m for m in imports if m.startswith(("mlpinfer.formats", "mlpinfer.importers",
                                                    "mlpinfer._files", "mlpinfer._shipped"))}, imports


def test_formats_never_import_the_importers():
    for module, imports in GRAPH.items():
        if module.startswith("mlpinfer.formats"):
            assert not {m for m in imports if m.startswith("mlpinfer.importers")}, module


def test_no_module_imports_its_own_caller():
    cycles = sorted(module for module in GRAPH
                    if module != "mlpinfer" and _reaches(module, module))
    assert cycles == [], f"import cycles through {cycles}"

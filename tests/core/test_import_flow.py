"""Imports flow one way: the core never reaches up into codecarbon_callbacks, outputs never import
the tracker, storage never imports the sender, and no import cycle exists inside the core.

The rules are read off the source (every import statement, at any depth, except those under
``if TYPE_CHECKING:``), so a lazy import inside a function counts like one at the top.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import codecarbon_callbacks_core

CORE = "codecarbon_callbacks_core"
CORE_DIR = Path(codecarbon_callbacks_core.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = [CORE, *path.relative_to(CORE_DIR).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(CORE_DIR.rglob("*.py"))}
#: the import names of core/pyproject.toml's dependencies
CORE_DEPENDENCIES = {"psutil", "pynvml", "pandas", "requests"}


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imported_modules(module: str) -> set[str]:
    """Every module ``module`` imports (absolute names), outside ``if TYPE_CHECKING:`` blocks."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if _is_type_checking_block(child):
                for orelse in child.orelse:  # the else branch runs
                    visit(orelse)
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - child.level + 1]
                    source = ".".join(base + ([child.module] if child.module else []))
                else:
                    source = child.module or ""
                # `from package import submodule` imports the submodule (the package's own
                # __init__ counts only when a name is taken from it)
                submodules = {f"{source}.{a.name}" for a in child.names} & MODULES.keys()
                found.update(submodules)
                if len(submodules) < len(child.names):
                    found.add(source)
            visit(child)

    visit(ast.parse(path.read_text("utf-8")))
    return found


def test_the_core_has_modules_to_check() -> None:
    assert f"{CORE}.tracker" in MODULES and f"{CORE}.output.api" in MODULES
    assert len(MODULES) > 30


def test_no_core_module_imports_codecarbon_callbacks() -> None:
    offenders = {
        module: sorted(
            m
            for m in imported_modules(module)
            if m == "codecarbon_callbacks" or m.startswith("codecarbon_callbacks.")
        )
        for module in MODULES
    }
    assert {m: found for m, found in offenders.items() if found} == {}


def test_every_core_module_imports_with_codecarbon_callbacks_unimportable() -> None:
    """A core-only installation: ``import codecarbon_callbacks`` fails, every core module loads."""
    code = f"""
import importlib, json, sys
sys.modules["codecarbon_callbacks"] = None  # any import of it now raises ImportError
before = set(sys.modules)
failed = {{}}
for name in {sorted(MODULES)!r}:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = repr(exc)
loaded = {{n.split(".")[0] for n in set(sys.modules) - before}}
third_party = sorted(n for n in loaded
                     if n not in sys.stdlib_module_names and n != "codecarbon_callbacks_core")
print(json.dumps({{"failed": failed, "third_party": third_party}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["failed"] == {}
    # importing a module loads at most the core's declared dependencies (each is imported where
    # it is used), never something only another package happened to install
    assert set(result["third_party"]) <= CORE_DEPENDENCIES, result["third_party"]


def test_no_output_module_imports_the_tracker() -> None:
    outputs = [m for m in MODULES if m.startswith(f"{CORE}.output.")]
    assert outputs
    offenders = {
        m: sorted(i for i in imported_modules(m) if i == f"{CORE}.tracker") for m in outputs
    }
    assert {m: found for m, found in offenders.items() if found} == {}


def test_storage_imports_no_sender() -> None:
    imports = imported_modules(f"{CORE}.output.spool")
    assert f"{CORE}.output.sender" not in imports and f"{CORE}.output.resend" not in imports


def test_no_import_cycle_inside_the_core() -> None:
    graph = {m: sorted(i for i in imported_modules(m) if i in MODULES and i != m) for m in MODULES}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in graph[module]:
            if state.get(target) == 1:
                cycles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module)
    assert cycles == []

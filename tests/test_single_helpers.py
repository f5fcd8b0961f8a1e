"""One definition per need, read off the source of both packages: warn-once, the
torch-if-already-imported probe and the atomic JSON write live in codecarbon_callbacks_core._shared
and nowhere else."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import codecarbon_callbacks_core

import codecarbon_callbacks

PACKAGES = [
    Path(codecarbon_callbacks_core.__file__).parent,
    Path(codecarbon_callbacks.__file__).parent,
]
SHARED = Path(codecarbon_callbacks_core.__file__).parent / "_shared.py"
ONCE_NAME = re.compile(r"(warn|log|report|say|note)_?once", re.IGNORECASE)


def sources() -> dict[Path, ast.Module]:
    return {
        path: ast.parse(path.read_text("utf-8"))
        for package in PACKAGES
        for path in sorted(package.rglob("*.py"))
    }


def _is_sys_modules(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "modules"
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
    )


def _calls(node: ast.AST, module: str, name: str) -> bool:
    return any(
        isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr == name
        and isinstance(n.func.value, ast.Name)
        and n.func.value.id == module
        for n in ast.walk(node)
    )


def test_the_scan_sees_both_packages_and_the_helpers() -> None:
    found = sources()
    assert SHARED in found and len(found) > 40
    names = {n.name for n in ast.walk(found[SHARED]) if isinstance(n, ast.FunctionDef)}
    assert {"warn_once", "imported_torch", "write_json_atomic"} <= names


def test_one_warn_once() -> None:
    defined = [
        f"{path.name}:{node.name}"
        for path, tree in sources().items()
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and ONCE_NAME.search(node.name)
    ]
    assert defined == ["_shared.py:warn_once"]


def test_one_torch_probe() -> None:
    probes = []
    for path, tree in sources().items():
        for node in ast.walk(tree):
            get = (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get"
                and _is_sys_modules(node.func.value)
            )
            index = isinstance(node, ast.Subscript) and _is_sys_modules(node.value)
            if (
                get
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and node.args[0].value == "torch"
            ) or (index and isinstance(node.slice, ast.Constant) and node.slice.value == "torch"):
                probes.append(f"{path.name}:{node.lineno}")
    assert [p.split(":")[0] for p in probes] == ["_shared.py"]


def test_one_atomic_json_write() -> None:
    writers = [
        f"{path.name}:{node.name}"
        for path, tree in sources().items()
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and _calls(node, "json", "dump")
        and _calls(node, "os", "replace")
    ]
    assert writers == ["_shared.py:write_json_atomic"]

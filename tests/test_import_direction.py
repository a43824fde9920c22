"""Imports follow the data flow: world_model -> rad_env -> agents, never backwards.

world_model imports neither rad_env nor agents; rad_env never imports agents; nothing imports
agents (agents is the end of the line). Read from the source with ``ast``: ``import``/``from``
statements (relative ones resolved), ``importlib.import_module("...")`` and ``__import__`` calls
with a literal name, and ``"package.module:attr"`` entry-point strings.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("world_model", "rad_env", "agents")
#: package -> the project packages it must not import (agents may import its own modules)
FORBIDDEN = {
    "world_model": {"rad_env", "agents"},
    "rad_env": {"agents"},
    "agents": set(),
}
_ENTRY_POINT = re.compile(r"^([A-Za-z_][\w.]*):[A-Za-z_]\w*$")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Absolute names of the modules ``source`` (the code of ``module``) imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module's package
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            if prefix:
                names.add(prefix)
            else:  # `from .. import agents` at the top of the tree
                names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = _ENTRY_POINT.match(node.value)
            if match:
                names.add(match.group(1))
    return names


def violations(root: Path) -> list[str]:
    """Every import in ``root/<package>/**.py`` that goes against the data flow."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            module = _module_name(path, root)
            imported = imported_modules(path.read_text(encoding="utf-8"), module,
                                        path.name == "__init__.py")
            for name in sorted(imported):
                top = name.split(".")[0]
                if top in FORBIDDEN[package]:
                    found.append(f"{path.relative_to(root)}: imports {name} "
                                 f"({package} must not import {top})")
    return found


def test_imports_follow_the_data_flow():
    assert violations(ROOT) == []


def _write(root: Path, relative: str, source: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source, encoding="utf-8")


@pytest.mark.parametrize("relative,source,culprit", [
    ("world_model/train.py", "from rad_env import env\n", "rad_env"),
    ("world_model/data/x.py", "import agents.ppo\n", "agents.ppo"),
    ("world_model/y.py", "import importlib\nimportlib.import_module('rad_env.env')\n", "rad_env.env"),
    ("rad_env/vector.py", "def f():\n    from agents import ppo\n", "agents"),
    ("rad_env/registration.py", "EP = 'agents.ppo:Policy'\n", "agents.ppo"),
    ("rad_env/sub/z.py", "from ...agents import ppo\n", "agents"),
    ("world_model/data/z.py", "from ... import rad_env\n", "rad_env"),
])
def test_the_checker_catches_each_kind_of_backward_import(tmp_path, relative, source, culprit):
    for package in PACKAGES:
        _write(tmp_path, f"{package}/__init__.py", "")
    _write(tmp_path, relative, source)
    found = violations(tmp_path)
    assert len(found) == 1 and f"imports {culprit}" in found[0], found


def test_the_checker_allows_the_forward_direction(tmp_path):
    for package in PACKAGES:
        _write(tmp_path, f"{package}/__init__.py", "")
    _write(tmp_path, "rad_env/env.py", "import world_model\nfrom world_model.rollout import Engine\n")
    _write(tmp_path, "agents/ppo.py", "import rad_env\nfrom . import planning\n")
    _write(tmp_path, "world_model/data/a.py", "from .format import read_episode\n")
    assert violations(tmp_path) == []

"""Imports follow the data flow: world_model -> rad_env -> agents, never backwards, and inside
world_model every layer imports only the layers below it.

world_model imports neither rad_env nor agents; rad_env never imports agents; nothing imports
agents (agents is the end of the line). Inside world_model (:data:`LAYERS`): the episode data
imports nothing of the rest (but errors and atomic writes); the network imports nothing of the
diffusion, the engine, training or evaluation; the engine never imports training, evaluation or
the simulators; training never imports the engine; evaluation never imports training. Read from
the source with ``ast``: ``import``/``from`` statements (relative ones resolved),
``importlib.import_module("...")`` and ``__import__`` calls with a literal name, and
``"package.module:attr"`` entry-point strings.
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
_WM = "world_model."
_ABOVE_DATA = ("config", "configs", "devices", "latents", "network", "diffusion", "world",
               "checkpoint", "engine", "training", "evaluation", "sim", "commands", "cli")
#: Layers inside world_model: module prefix -> the world_model modules it must not import.
LAYERS = {
    "world_model.errors": _ABOVE_DATA + ("data", "io"),
    "world_model.io": _ABOVE_DATA + ("data",),
    "world_model.data": _ABOVE_DATA,
    "world_model.sim": ("config", "configs", "devices", "latents", "network", "diffusion", "world",
                        "checkpoint", "engine", "training", "evaluation", "commands", "cli"),
    "world_model.config": ("latents", "network", "diffusion", "world", "checkpoint", "engine",
                           "training", "evaluation", "data", "sim", "commands", "cli"),
    "world_model.devices": ("config", "latents", "network", "diffusion", "world", "checkpoint",
                            "engine", "training", "evaluation", "data", "sim", "commands", "cli"),
    "world_model.latents": ("network", "diffusion", "world", "checkpoint", "engine", "training",
                            "evaluation", "data", "sim", "commands", "cli"),
    "world_model.network": ("diffusion", "latents", "world", "checkpoint", "engine", "training",
                            "evaluation", "data", "sim", "commands", "cli"),
    "world_model.diffusion": ("network", "latents", "world", "checkpoint", "engine", "training",
                              "evaluation", "data", "sim", "commands", "cli"),
    "world_model.world": ("checkpoint", "engine", "training", "evaluation", "data", "sim",
                          "commands", "cli"),
    "world_model.checkpoint": ("engine", "training", "evaluation", "data", "sim", "commands", "cli"),
    "world_model.engine": ("checkpoint", "training", "evaluation", "data", "sim", "commands", "cli"),
    "world_model.training": ("engine", "evaluation", "sim", "commands", "cli"),
    "world_model.evaluation": ("training", "sim", "commands", "cli"),
}
#: Exceptions to :data:`LAYERS`: the frame metrics are a leaf that the VAE trainer validates with,
#: and the inverse-dynamics judge is the network ``rad train-idm`` trains.
ALLOWED = {"world_model.training": ("world_model.evaluation.metrics", "world_model.evaluation.idm")}
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


def _layer(module: str) -> str | None:
    """The :data:`LAYERS` entry ``module`` belongs to (the longest matching prefix)."""
    matches = [p for p in LAYERS if module == p or module.startswith(p + ".")]
    return max(matches, key=len) if matches else None


def _below(layer: str, name: str) -> str | None:
    """The forbidden layer ``name`` falls in, for a module of ``layer``; None if allowed."""
    if any(name == a or name.startswith(a + ".") for a in ALLOWED.get(layer, ())):
        return None
    for forbidden in LAYERS[layer]:
        prefix = _WM + forbidden
        if name == prefix or name.startswith(prefix + "."):
            return prefix
    return None


def violations(root: Path) -> list[str]:
    """Every import in ``root/<package>/**.py`` that goes against the data flow."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            module = _module_name(path, root)
            imported = imported_modules(path.read_text(encoding="utf-8"), module,
                                        path.name == "__init__.py")
            layer = _layer(module)
            for name in sorted(imported):
                top = name.split(".")[0]
                if top in FORBIDDEN[package]:
                    found.append(f"{path.relative_to(root)}: imports {name} "
                                 f"({package} must not import {top})")
                elif layer is not None and (culprit := _below(layer, name)):
                    found.append(f"{path.relative_to(root)}: imports {name} "
                                 f"({layer} must not import {culprit})")
    return found


def test_imports_follow_the_data_flow():
    assert violations(ROOT) == []


def _write(root: Path, relative: str, source: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source, encoding="utf-8")


@pytest.mark.parametrize("relative,source,culprit", [
    ("world_model/training/run.py", "from rad_env import env\n", "rad_env"),
    ("world_model/data/x.py", "import agents.ppo\n", "agents.ppo"),
    ("world_model/y.py", "import importlib\nimportlib.import_module('rad_env.env')\n", "rad_env.env"),
    ("rad_env/vector.py", "def f():\n    from agents import ppo\n", "agents"),
    ("rad_env/registration.py", "EP = 'agents.ppo:Policy'\n", "agents.ppo"),
    ("rad_env/sub/z.py", "from ...agents import ppo\n", "agents"),
    ("world_model/data/z.py", "from ... import rad_env\n", "rad_env"),
    ("world_model/engine/x.py", "from world_model.training import run\n", "world_model.training"),
    ("world_model/network/x.py", "from ..engine import rollout\n", "world_model.engine"),
    ("world_model/network/y.py", "import world_model.evaluation.metrics\n",
     "world_model.evaluation.metrics"),
    ("world_model/data/w.py", "from world_model.network.model import RADModel\n",
     "world_model.network.model"),
    ("world_model/training/t.py", "from world_model.engine.rollout import E\n",
     "world_model.engine.rollout"),
    ("world_model/evaluation/e.py", "from ..training.run import train\n", "world_model.training.run"),
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
    _write(tmp_path, "rad_env/env.py",
           "import world_model\nfrom world_model.engine.rollout import Engine\n")
    _write(tmp_path, "agents/ppo.py", "import rad_env\nfrom . import planning\n")
    _write(tmp_path, "world_model/data/a.py", "from .format import read_episode\n")
    _write(tmp_path, "world_model/engine/r.py", "from ..network.model import RADModel\n")
    _write(tmp_path, "world_model/training/v.py", "from world_model.evaluation.metrics import psnr\n")
    assert violations(tmp_path) == []


# -- no import circles -------------------------------------------------------------------------
def _edges(source: str, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """The project modules ``source`` imports, at any level (in functions too), except under
    ``if TYPE_CHECKING:`` (annotations only, never run)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = [ast.Pass()]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            for alias in node.names:
                full = f"{prefix}.{alias.name}" if prefix else alias.name
                out.add(full if full in modules else prefix)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return {m for m in out if m in modules and m != module}


def import_circles(root: Path) -> list[list[str]]:
    """The import circles among the project's modules (strongly connected components)."""
    paths = {_module_name(p, root): p for package in PACKAGES for p in (root / package).rglob("*.py")}
    modules = set(paths)
    graph = {m: _edges(p.read_text(encoding="utf-8"), m, p.name == "__init__.py", modules)
             for m, p in paths.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return circles


def test_no_import_circles():
    assert import_circles(ROOT) == []


def test_the_circle_finder_sees_a_circle_through_a_function_level_import(tmp_path):
    for package in PACKAGES:
        _write(tmp_path, f"{package}/__init__.py", "")
    _write(tmp_path, "world_model/a.py", "from world_model.b import f\n")
    _write(tmp_path, "world_model/b.py", "def f():\n    from world_model import a\n")
    _write(tmp_path, "world_model/c.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
           "    from world_model.a import x\n")
    assert import_circles(tmp_path) == [["world_model.a", "world_model.b"]]


def test_no_source_file_over_400_lines():
    """Small files, one concept each (design/style.md)."""
    long = {str(p.relative_to(ROOT)): n for package in PACKAGES
            for p in sorted((ROOT / package).rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert long == {}

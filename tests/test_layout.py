"""The package's layers: each imports only from the layers below it, with no cycles,
and the runtime never imports the training scripts. Every import counts, including
the ones inside functions (they are still dependencies, only deferred)."""
from __future__ import annotations

import ast
from pathlib import Path

from .conftest import ROOT

PACKAGE = ROOT / "emotion_app"
# Lowest first. A module may import from its own layer and those listed before it.
LAYERS = ["core", "media", "models", "pipelines", "train", "annotation", "finetune", "app", "<entry points>"]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else "<entry points>"


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; ``from x import y`` counts x.y when
    x.y is a module of the package)."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names if (ROOT / f"{base}.{alias.name}".replace(
                ".", "/")).with_suffix(".py").exists() or (ROOT / f"{base}.{alias.name}".replace(".", "/")).is_dir()}
    return {name for name in found if name}


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {i for i in imports_of(path) if i in modules} for name, path in modules.items()}


def test_every_layer_imports_only_from_the_layers_below_it():
    upward = []
    for module, imported in graph().items():
        rank = LAYERS.index(layer_of(module))
        for target in imported:
            if target == "emotion_app":
                upward.append(f"{module} imports the package face (emotion_app/__init__)")
            elif LAYERS.index(layer_of(target)) > rank:
                upward.append(f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})")
    assert not upward, "\n".join(sorted(upward))


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(module, path):
        state[module] = 1
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


def test_the_runtime_never_imports_the_training_scripts():
    offenders = [module_name(p) for p in PACKAGE.rglob("*.py")
                 if any(i == "training" or i.startswith("training.") for i in imports_of(p))]
    assert not offenders


def test_the_layout_test_sees_a_planted_upward_import(tmp_path, monkeypatch):
    """The check itself can fail: a core module importing a pipeline is caught."""
    planted = PACKAGE / "core" / "_planted_for_layout_test.py"
    planted.write_text("from ..pipelines import classify\n")
    try:
        graph_with = graph()
        assert "emotion_app.pipelines" in graph_with["emotion_app.core._planted_for_layout_test"]
        offenders = [m for m, targets in graph_with.items() for t in targets
                     if LAYERS.index(layer_of(t)) > LAYERS.index(layer_of(m))]
        assert offenders == ["emotion_app.core._planted_for_layout_test"]
    finally:
        planted.unlink()

"""The package's layering: a lower layer never imports a higher one, packages import each other without cycles, and
the recipe is a pure schema. Lazy imports inside functions count: they are dependencies all the same.

    python tests/test_layers.py [SRC]   # prints the package import graph (for review notes)
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "bertpress"

#: layer of each top-level module or package of bertpress (see docs/architecture.md)
LAYERS = {
    "bertpress": 1, "errors": 1, "atomic": 1, "hashing": 1, "config": 1, "registry": 1, "optim": 1, "progress": 1,
    "models": 2, "data": 2,
    "init": 3, "objectives": 3, "nas": 3,
    "recipe": 4, "train": 4,
    "evaluate": 5, "search": 5, "quickstart": 5, "pipeline": 5, "recipe_reference": 5, "export": 5, "baselines": 5,
    "cli": 6, "__main__": 6,
}


def unit(module: str) -> str:
    """``bertpress.train.run`` -> ``train``; ``bertpress`` -> ``bertpress``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def imports(src: Path = SRC) -> dict[str, set[str]]:
    """``{importing module: {imported bertpress modules}}`` over every file of the package."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                    node.module == "bertpress" or node.module.startswith("bertpress.")):
                targets = [node.module] if node.module != "bertpress" else [f"bertpress.{a.name}" if f"{a.name}" in LAYERS
                                                                           else "bertpress" for a in node.names]
                found[name].update(targets)
            elif isinstance(node, ast.Import):
                found[name].update(a.name for a in node.names if a.name.split(".")[0] == "bertpress")
    return found


def package_graph(src: Path = SRC) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for importer, targets in imports(src).items():
        for target in targets:
            if unit(importer) != unit(target):
                graph[unit(importer)].add(unit(target))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle found by depth-first search (one representative per back edge)."""
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_every_module_has_a_layer():
    missing = {unit(m) for m in imports()} - set(LAYERS)
    assert not missing, f"add {sorted(missing)} to LAYERS (and to docs/architecture.md)"


def test_no_upward_import():
    upward = sorted(f"{importer} -> {target}" for importer, targets in imports().items() for target in targets
                    if LAYERS[unit(importer)] < LAYERS[unit(target)])
    assert not upward, "a lower layer imports a higher one:\n" + "\n".join(upward)


def test_packages_import_each_other_without_cycles():
    assert not cycles(package_graph()), cycles(package_graph())


def test_recipe_is_a_pure_schema():
    found = {m: t for m, t in imports().items() if unit(m) == "recipe"}
    assert {"bertpress.recipe", "bertpress.recipe.stages"} <= set(found)
    for module, targets in found.items():
        outside = {t for t in targets if unit(t) != "recipe"} - {"bertpress.config", "bertpress.errors"}
        assert not outside, f"{module} imports {sorted(outside)}"


def test_the_check_sees_a_cycle_and_an_upward_import(tmp_path):
    pkg = tmp_path / "bertpress"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "models" / "__init__.py").write_text("")
    (pkg / "models" / "a.py").write_text("def f():\n    from bertpress.train.run import distill\n")
    (pkg / "train").mkdir()
    (pkg / "train" / "__init__.py").write_text("")
    (pkg / "train" / "run.py").write_text("from bertpress.models.a import f\n")
    assert cycles(package_graph(pkg)) == [["models", "train", "models"]]
    assert "bertpress.train.run" in imports(pkg)["bertpress.models.a"]


if __name__ == "__main__":
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else SRC
    graph = package_graph(src)
    for node in sorted(graph, key=lambda n: (LAYERS.get(n, 0), n)):
        print(f"{node} ({LAYERS.get(node, '?')}) -> {', '.join(sorted(graph[node], key=lambda n: (LAYERS.get(n, 0), n)))}")
    print("cycles:", cycles(graph) or "none")

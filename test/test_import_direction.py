"""The package's layers point one way and its imports have no cycle.

Every import in the package is read from the source (module level and inside functions), so a
lazy import cannot hide a cycle. The direction, lowest layer first:

    base (errors, imaging, memory, metrics, synthetic) ← models ← model_io, semantics ← deploy
    ← options ← pipeline ← ros ← tools ← cli;  io sits beside models and is used by ros/tools

``cli`` is imported by nothing; only ``ros`` imports rclpy; only ``deploy`` imports tensorrt.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sgdfuse_ros"

LAYERS: dict[str, int] = {
    "errors": 0,
    "imaging": 1,
    "memory": 0,
    "metrics": 1,
    "synthetic": 1,
    "weights": 0,
    "models": 2,
    "io": 2,
    "model_io": 3,
    "semantics": 3,
    "deploy": 4,
    "options": 5,
    "pipeline": 6,
    "ros": 7,
    "tools": 8,
    "cli": 9,
}


def unit_of(module: str) -> str:
    """``sgdfuse_ros.io.bag`` → ``io``; ``sgdfuse_ros`` itself → ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def module_name(path: Path, root: Path = PACKAGE) -> str:
    relative = path.relative_to(root.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, root: Path = PACKAGE) -> set[str]:
    """Absolute names of the sgdfuse_ros modules a file imports, wherever the import stands."""
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] == "sgdfuse_ros"}


def package_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        # `from pkg import sub` names a module when pkg/sub.py exists, else an attribute of pkg
        graph[name] = {
            target for target in imports_of(path, root) if target in modules and target != name
        }
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle between modules (package ``__init__`` edges to children excluded)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if target.startswith(node + "."):  # a package importing its own submodule
                continue
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if state.get(target) is None and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None and (cycle := visit(node)):
            return cycle
    return None


def direction_violations(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for source, targets in graph.items():
        source_unit = unit_of(source)
        for target in targets:
            target_unit = unit_of(target)
            if source_unit == target_unit or not source_unit or not target_unit:
                continue
            if LAYERS[target_unit] >= LAYERS[source_unit] or target_unit == "cli":
                problems.append(f"{source} imports {target} ({source_unit} → {target_unit})")
    return sorted(problems)


def test_every_package_unit_has_a_layer() -> None:
    units = {unit_of(name) for name in package_graph()} - {""}
    assert units <= set(LAYERS), f"give these a layer in LAYERS: {sorted(units - set(LAYERS))}"


def test_no_import_cycle() -> None:
    assert find_cycle(package_graph()) is None


def test_imports_follow_the_layer_direction() -> None:
    assert direction_violations(package_graph()) == []


@pytest.mark.parametrize(
    ("library", "allowed"), [("rclpy", "ros"), ("tensorrt", "deploy"), ("launch", "ros")]
)
def test_heavy_or_ros_libraries_stay_in_their_unit(library: str, allowed: str) -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            if any(name == library or name.startswith(library + ".") for name in names):
                if unit_of(module_name(path)) != allowed:
                    offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []


def test_the_checks_catch_a_cycle_and_a_wrong_direction(tmp_path: Path) -> None:
    """The same checks on a small package with a cycle and an upward import."""
    root = tmp_path / "sgdfuse_ros"
    (root / "io").mkdir(parents=True)
    (root / "cli").mkdir()
    (root / "__init__.py").write_text("")
    (root / "io" / "__init__.py").write_text("")
    (root / "cli" / "__init__.py").write_text("")
    (root / "io" / "bag.py").write_text("def f():\n    from sgdfuse_ros.cli import fuse\n")
    (root / "cli" / "fuse.py").write_text("from ..io import bag\n")
    graph = package_graph(root)
    assert find_cycle(graph) is not None
    assert "sgdfuse_ros.io.bag imports sgdfuse_ros.cli.fuse (io → cli)" in (
        direction_violations(graph)
    )

"""The import graph: the core (kew_plug, without the backends and serializers it installs)
imports nothing of backends, serializers or harness at module level, backends and
serializers never import each other or the harness, and no two modules import each other
in a circle. Imports inside functions (the registry's lazy loading) and under
TYPE_CHECKING are not edges."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = {"kew_plug": ROOT / "kew_plug", "kew_plug.backends": ROOT / "backends"}
PARTS |= {"kew_plug.serializers": ROOT / "serializers", "harness": ROOT / "harness"}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PARTS.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([package, *parts])
            if name.startswith(("kew_plug.backends.", "kew_plug.serializers.")) and (
                folder == ROOT / "kew_plug"
            ):
                continue  # the symlinked folders, seen under their own names
            found[name] = path
    return found


def top_level_imports(path: Path, name: str, is_package: bool) -> Iterator[str]:
    tree = ast.parse(path.read_text())
    base = name if is_package else name.rpartition(".")[0]
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node) if isinstance(node, ast.Try | ast.If) else [node]:
            if isinstance(sub, ast.Import):
                yield from (a.name for a in sub.names)
            elif isinstance(sub, ast.ImportFrom):
                if sub.level:
                    prefix = base.rsplit(".", sub.level - 1)[0] if sub.level > 1 else base
                    target = f"{prefix}.{sub.module}" if sub.module else prefix
                else:
                    target = sub.module or ""
                yield target
                yield from (f"{target}.{a.name}" for a in sub.names)


def graph() -> dict[str, set[str]]:
    mods = modules()
    edges: dict[str, set[str]] = {}
    for name, path in mods.items():
        targets = top_level_imports(path, name, path.name == "__init__.py")
        edges[name] = {t for t in targets if t in mods and t != name}
    return edges


def part_of(module: str) -> str:
    for part in ("kew_plug.backends", "kew_plug.serializers", "harness"):
        if module == part or module.startswith(part + "."):
            return part
    return "core"


def test_the_core_imports_no_backend_serializer_or_harness() -> None:
    bad = sorted(
        f"{src} -> {dst}"
        for src, dsts in graph().items()
        for dst in dsts
        if part_of(src) == "core" and part_of(dst) != "core"
    )
    assert bad == []


def test_backends_and_serializers_stay_apart_and_never_import_the_harness() -> None:
    bad = sorted(
        f"{src} -> {dst}"
        for src, dsts in graph().items()
        for dst in dsts
        if part_of(src) in ("kew_plug.backends", "kew_plug.serializers")
        and part_of(dst) not in ("core", part_of(src))
    )
    assert bad == []


def test_no_import_cycles() -> None:
    edges = graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            # A package's __init__ re-exporting its own modules is not a circle.
            if node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_graph_is_read() -> None:
    edges = graph()
    assert "kew_plug.registry" in edges["kew_plug.queue"]
    assert "kew_plug.interfaces" in edges["kew_plug.backends.redis.store"]

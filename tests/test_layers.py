"""The package's layering, read from the source: no import cycle anywhere in `pacos`, and training is a leaf.

Every `import`/`from ... import` counts, including the lazy ones inside functions (they are still
dependencies, only deferred). `pacos.cli` (the command dispatcher) and `pacos.demo` (the whole pipeline
in one command) sit above every stage and may import any of them; apart from those, nothing outside
`pacos/train/` imports `pacos.train`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pacos

ROOT = Path(pacos.__file__).parent
ABOVE_ALL_STAGES = {"pacos.cli", "pacos.demo"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def imported(name: str, path: Path) -> set[str]:
    """The pacos modules `name` imports (a `from pkg import mod` names the module, else the package)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imported(name, path) for name, path in MODULES.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module, or a module importing itself (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read():
    # The reader must see both kinds of import, or the checks below would pass on an empty graph.
    assert "pacos.prompting.templates" in GRAPH["pacos.prompting.encode"]
    assert "pacos.train.config" in GRAPH["pacos.train.loop"]
    assert any("pacos.train.loop" in deps for deps in GRAPH.values())


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    assert cycles(GRAPH) == []


def test_nothing_outside_training_imports_training():
    offenders = {name: sorted(d for d in deps if d.startswith("pacos.train"))
                 for name, deps in GRAPH.items()
                 if not name.startswith("pacos.train") and name not in ABOVE_ALL_STAGES}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_request_parsing_imports_no_model_code():
    """The server's protocol layer parses requests without pulling in torch or the generation engine."""
    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for dep in GRAPH[todo.pop()]:
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen

    assert not {m for m in reach("pacos.serve.protocol") if m.startswith(("pacos.infer.batching", "pacos.train"))}

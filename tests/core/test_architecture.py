"""The package's shape, kept by tests: no import cycles, and the engine-free parts stay free
of Beam (a training machine or a parser test needs no pipeline engine).

Imports are read from the source with `ast`, at module level and inside functions alike: a
lazy import is still a dependency, and a cycle hidden in a function body is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "curate"

# Modules that must never reach Beam, directly or through what they import.
ENGINE_FREE = ("curate.parse", "curate.shards.loader", "curate.train")
MAX_MODULE_LINES = 500
# Modules allowed over MAX_MODULE_LINES, each with the reason (see the README's folder map).
LONG_MODULES = {
    "curate.sources.pmc": "three PMC layouts (cloud, legacy, folder) sharing one reader",
    "curate.train.mllm": "the LLaVA-style model, its data collation and its training loop",
    "curate.instruct.templated": "CheXinstruct-style templates: one generator per task",
    "curate.demo.pmc": "the PMC demo corpus: three layouts with planted broken files",
    "curate.demo.radiology": "the radiology demo corpus: DICOM in many syntaxes plus CSVs",
    "curate.dedup.near": "probe keys, the bounded spanning-forest search and caption MinHash edges",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, modules: dict[str, Path]) -> tuple[set[str], set[str]]:
    """(curate modules imported, top-level names of other packages imported)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    inner: set[str] = set()
    outer: set[str] = set()
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                (inner if alias.name.startswith("curate") else outer).add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if not base.startswith("curate"):
                outer.add(base.split(".")[0])
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                inner.add(candidate if candidate in modules else base)
    inner = {name for name in inner if name in modules and name != this}
    return inner, {name.split(".")[0] for name in outer}


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    modules = all_modules()
    graph: dict[str, set[str]] = {}
    external: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name], external[name] = imports_of(path, modules)
    return graph, external


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def closure(graph: dict[str, set[str]], start: str) -> set[str]:
    """`start`, everything it imports transitively, and the packages Python imports on the way."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        todo.extend(graph[node])
        parts = node.split(".")
        todo.extend(
            ".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in graph
        )
    return seen


def test_the_graph_reader_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    modules = {"curate.a": tmp_path / "a.py", "curate.b": tmp_path / "b.py", "curate": tmp_path}
    source = tmp_path / "a.py"
    source.write_text("def f():\n    from curate import b\n    import apache_beam\n")
    inner, outer = imports_of_for(source, modules, "curate.a")
    assert inner == {"curate.b"} and outer == {"apache_beam"}


def imports_of_for(path: Path, modules: dict[str, Path], name: str) -> tuple[set[str], set[str]]:
    # imports_of derives the module name from SRC; a file elsewhere is read the same way.
    tree_text = path.read_text()
    fake = PACKAGE / "_probe_.py"
    assert not fake.exists()
    try:
        fake.write_text(tree_text)
        return imports_of(fake, {**modules, "curate._probe_": fake})
    finally:
        fake.unlink()


def test_cycle_finder_finds_a_planted_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    graph, _ = import_graph()
    assert cycles(graph) == []


@pytest.mark.parametrize("root", ENGINE_FREE)
def test_engine_free_parts_import_no_beam(root: str) -> None:
    graph, external = import_graph()
    starts = [name for name in graph if name == root or name.startswith(root + ".")]
    assert starts, f"{root} matches no module"
    offenders = {}
    for start in starts:
        for name in closure(graph, start):
            if "apache_beam" in external[name]:
                offenders[start] = name
    assert offenders == {}, f"these reach Beam (start -> the module importing it): {offenders}"


def test_modules_stay_short_or_say_why() -> None:
    long = {
        name: sum(1 for _ in path.open(encoding="utf-8")) for name, path in all_modules().items()
    }
    over = {
        name: n for name, n in long.items() if n > MAX_MODULE_LINES and name not in LONG_MODULES
    }
    assert over == {}
    stale = {name for name in LONG_MODULES if long.get(name, 0) <= MAX_MODULE_LINES}
    assert stale == set(), "listed as long but no longer are: drop them from LONG_MODULES"


def test_sources_hold_only_real_sources() -> None:
    graph, _ = import_graph()
    sources = [name for name in graph if name.startswith("curate.sources")]
    demo_users = {name for name in sources if any(t.startswith("curate.demo") for t in graph[name])}
    assert demo_users == set()
    assert not any(name.rpartition(".")[2].startswith("demo") for name in sources)

"""The shape of the code: no import cycle between modules, and the layers point one way.

Every import that runs counts, those inside functions too (an import moved into a function to dodge a cycle
is still the cycle); imports for the type checker only (`if TYPE_CHECKING:`) never run and do not count. Run `python -m tests.test_import_graph` to print the modules, their imports and any cycle.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("backoffice", "tasks")
# Layers that must not import the ones built on them: services hold the rules, views and tasks call them.
# (backoffice/auth also holds what services use: password hashing, signed tokens; only its pages are views.)
VIEW_PACKAGES = ("backoffice.admin", "backoffice.portal", "backoffice.api", "backoffice.ops",
                 "backoffice.auth.views", "backoffice.auth.account_views", "backoffice.auth.access")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> dict[str, int]:
    """The project modules `name` imports, each with the line of its first import."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            edges.setdefault(target, line)

    tree = ast.parse(path.read_text(), str(path))
    # Imports for the type checker only (`if TYPE_CHECKING:`) are never run: no cycle at import time.
    typing_only = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING"
                   for inner in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # `from backoffice.services import audit` imports the module backoffice.services.audit.
                candidate = f"{base}.{alias.name}"
                add(candidate if candidate in known else base, node.lineno)
    return edges


def graph() -> dict[str, dict[str, int]]:
    found = modules()
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    # The walk is as deep as the longest import path (a few dozen modules): the default recursion limit is
    # plenty, and the limit is the interpreter's, shared with every thread a test leaves running.
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(groups)


def _is_package_init(name: str) -> bool:
    return (ROOT / Path(*name.split(".")) / "__init__.py").exists()


def module_cycles() -> list[list[str]]:
    """Cycles between modules. A package's __init__ that wires the app together (create_app imports every
    blueprint, and every blueprint imports from the package) is left out: that is how Flask apps start, not
    two modules needing each other."""
    edges = graph()
    wiring = {name for name in edges if _is_package_init(name) and name in PACKAGES}
    trimmed = {name: {t: line for t, line in targets.items() if t not in wiring}
               for name, targets in edges.items() if name not in wiring}
    return cycles(trimmed)


def test_no_module_imports_another_that_imports_it_back():
    found = module_cycles()
    assert found == [], "import cycles:\n" + "\n".join(" <-> ".join(group) for group in found)


def test_services_and_models_import_no_view_or_task():
    edges = graph()
    wrong = [f"{name} imports {target} (line {line})"
             for name, targets in edges.items()
             if name.startswith(("backoffice.services", "backoffice.models"))
             for target, line in targets.items()
             if target.startswith(VIEW_PACKAGES + ("tasks",))]
    assert wrong == [], "\n".join(wrong)


if __name__ == "__main__":
    groups = module_cycles()
    edges = graph()
    print(f"{len(edges)} modules, {sum(map(len, edges.values()))} imports between them, {len(groups)} cycles")
    for group in groups:
        print("cycle:", " <-> ".join(group))
        for name in group:
            for target, line in edges[name].items():
                if target in group:
                    print(f"    {name} -> {target} (line {line})")

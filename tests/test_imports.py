"""The dependency picture the project promises: ``twogpu`` never imports ``alexnet``, and no two modules
import each other, directly or through others — counting imports inside functions too, so a cycle
cannot be hidden by importing late."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"alexnet": ROOT / "src" / "alexnet", "twogpu": ROOT / "twogpu"}


def _modules() -> dict[str, Path]:
    found = {}
    for pkg, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):  # subpackages too (alexnet.config)
            parts = [pkg, *path.relative_to(folder).with_suffix("").parts]
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module → the project modules it imports anywhere in its source (top level or in a function).
    A package's ``__init__`` counts as a module of its own; importing ``pkg.mod`` is an edge to
    ``pkg.mod`` only (Python runs ``pkg/__init__`` first whatever the importer does)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.stem == "__init__" else name.rsplit(".", 1)[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(
                        package.split(".")[: len(package.split(".")) - node.level + 1]
                        + ([base] if base else [])
                    )
                for (
                    a
                ) in node.names:  # `from alexnet.data import augment` imports the module alexnet.data.augment
                    targets.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "alexnet.training.train" in graph["alexnet.cli"]  # imported inside _user_errors()


def _is_command(module: str) -> bool:
    return module in ("alexnet.cli", "alexnet.__main__") or module.startswith("alexnet.commands")


def test_the_library_never_imports_a_command():
    """Commands import the library, never the reverse: a helper that a command and the library both
    need belongs in the library."""
    offenders = {
        m: sorted(t for t in ts if _is_command(t)) for m, ts in import_graph().items() if not _is_command(m)
    }
    assert not any(offenders.values()), {m: t for m, t in offenders.items() if t}


def test_every_command_in_the_table_has_a_module_with_add_args_and_run():
    import importlib

    from alexnet.cli import COMMANDS

    for name, (module, _help) in COMMANDS.items():
        mod = importlib.import_module(f"alexnet.commands.{module}")
        assert callable(mod.add_args) and callable(mod.run), name


def test_no_import_cycle_among_the_project_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_twogpu_never_imports_alexnet():
    offenders = {
        m: sorted(t for t in ts if t.startswith("alexnet"))
        for m, ts in import_graph().items()
        if m.startswith("twogpu")
    }
    assert not any(offenders.values()), offenders


def test_the_library_never_imports_the_commands_console():
    """The progress bar and the log handler are the commands' (alexnet.commands._console): library code
    logs, and takes a progress hook or a line printer as a parameter."""
    graph = import_graph()
    assert "alexnet.commands._console" in graph  # the module this test is about exists
    users = sorted(m for m, ts in graph.items() if "alexnet.commands._console" in ts)
    assert users and all(_is_command(m) for m in users), users


def _prints_outside_main(path: Path) -> list[int]:
    """Lines of ``print(...)`` calls in ``path`` outside a function named ``main`` (a module's
    ``python -m`` entry point is a command of its own)."""
    found: list[int] = []

    def visit(node: ast.AST, in_main: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_main or (isinstance(child, ast.FunctionDef) and child.name == "main")
            if isinstance(child, ast.Call) and isinstance(child.func, ast.Name) and child.func.id == "print":
                if not inside:
                    found.append(child.lineno)
            visit(child, inside)

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


def test_the_library_logs_and_never_prints():
    """One output channel: library modules log (logging.getLogger(__name__)); only commands print, and
    the trainer's console lines go through the printer the trainer is given (twogpu.trainer.print_line
    by default), on rank 0 only."""
    offenders = {
        m: lines
        for m, path in _modules().items()
        if not _is_command(m) and (lines := _prints_outside_main(path))
    }
    assert not offenders, offenders

"""Which of the package's files a piece of code runs, and one hash of them: cache keys that cannot go stale.

`closure(modules)` follows `import` statements statically (anywhere in a file, function bodies included; not those
under `if TYPE_CHECKING:`, which never run) from the given modules through the `seal_repro` package, adding the
packages' `__init__.py` files an import executes and the data files a module declares it reads in a module-level
`CODE_DATA = ("relative/path", ...)` (paths relative to the package root, e.g. an lm-eval task folder, whose
Python files' imports are followed too).

Two users: the memo keys every round with `code_fingerprint` of the modules that compute it, so an edit to any of
them (batching.py, say) makes the memo miss instead of serving a result of code that no longer exists; and a test
checks that every DVC stage lists, among its dependencies, every file its module's closure holds.
Why by hand: Python's `modulefinder` executes no code either, but it follows the whole standard library and site
packages and cannot skip TYPE_CHECKING blocks; we only want our own files.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from collections.abc import Iterable
from pathlib import Path

PACKAGE = "seal_repro"
ROOT = Path(__file__).resolve().parent  # the package folder


def _module_file(name: str, root: Path) -> Path | None:
    rel = Path(*name.split(".")[1:]) if name != PACKAGE else Path()
    for candidate in (root / rel.with_suffix(".py") if rel.parts else None, root / rel / "__init__.py"):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST):
    """Every node of `tree` except the bodies of `if TYPE_CHECKING:` (their `else:` runs, so it counts)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _imports(name: str, path: Path, root: Path) -> tuple[set[str], set[str]]:
    """(seal_repro modules `name` imports at run time, CODE_DATA paths it declares)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    data: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".") if is_pkg else name.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            candidates = [base] + [f"{base}.{a.name}" for a in node.names]
        elif (isinstance(node, ast.Assign) and node in tree.body and len(node.targets) == 1
              and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "CODE_DATA"):
            data |= {c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant) and isinstance(c.value, str)}
            continue
        else:
            continue
        for cand in candidates:
            if cand == PACKAGE or cand.startswith(PACKAGE + "."):
                while cand and _module_file(cand, root) is None:
                    cand = cand.rpartition(".")[0]
                if cand:
                    found.add(cand)
    return found, data


def closure(modules: Iterable[str], root: Path = ROOT) -> list[Path]:
    """The files (sorted) that importing and running `modules` reads from the package at `root`."""
    todo = list(modules)
    seen: set[str] = set()
    files: set[Path] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name, root)
        if path is None:
            raise ValueError(f"no module {name!r} under {root}")
        files.add(path)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # importing a.b.c runs a and a.b first
        found, data = _imports(name, path, root)
        todo += sorted(found)
        for rel in data:
            target = root / rel
            found_files = {f for f in target.rglob("*") if f.is_file() and "__pycache__" not in f.parts} \
                if target.is_dir() else {target}
            files |= found_files
            for f in found_files:  # a data folder's Python (an lm-eval task's utils.py) runs too: follow its imports
                if f.suffix == ".py":
                    todo += sorted(_imports(PACKAGE + ".__data__", f, root)[0])
    return sorted(files)


@functools.lru_cache(maxsize=None)
def _fingerprint(modules: tuple[str, ...], root: Path) -> str:
    h = hashlib.sha256()
    for f in closure(modules, root):
        h.update(f.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def code_fingerprint(*modules: str, root: Path = ROOT) -> str:
    """A hash of every file `closure(modules)` holds (paths and bytes); computed once per process."""
    return _fingerprint(tuple(sorted(modules)), Path(root))

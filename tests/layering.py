"""Keep the layering: `webhook` and `listener` never import each other, and the shared core `pulltag`
imports neither, except lazily from the CLI's dispatch (by module name strings, never an import
statement). Run as `python -m tests.layering`; also run by the test suite."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "pulltag": {"webhook", "listener"},
    "webhook": {"listener"},
    "listener": {"webhook"},
}


def imported_roots(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every import statement in a file, wherever it sits."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name.split(".")[0]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
        elif isinstance(node, ast.Call) and _is_dynamic_import(node):
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.append((node.lineno, arg.value.split(".")[0]))
    return found


def _is_dynamic_import(node: ast.Call) -> bool:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return name in {"import_module", "__import__"}


def violations(root: Path = ROOT) -> list[str]:
    problems: list[str] = []
    for package, forbidden in FORBIDDEN.items():
        for path in sorted((root / package).rglob("*.py")):
            for line, imported in imported_roots(path):
                if imported in forbidden:
                    rel = path.relative_to(root)
                    problems.append(f"{rel}:{line}: {package} must not import {imported}")
    return problems


def main() -> int:
    problems = violations()
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print("layering: ok (webhook and listener independent; pulltag imports neither)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

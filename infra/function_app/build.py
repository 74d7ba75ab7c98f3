"""Assemble the deployable Function: this folder's files plus only the package modules it imports.

Usage: python infra/function_app/build.py [--out DIR]   (default: infra/function_app/.package)
"""

from __future__ import annotations

import argparse
import ast
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
PACKAGE = "chargeback_pipeline"
APP_FILES = ("function_app.py", "host.json", "requirements.txt")
ALLOWED_THIRD_PARTY = {"azure"}
"""Top-level imports the package may use besides the standard library; requirements.txt has them."""
MARKER = ".chargeback-function-package"


def module_file(module: str) -> Path | None:
    """The source file of a dotted module in this repository, or None if there is none."""
    base = REPO_ROOT.joinpath(*module.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    """Every absolute module an import statement names, including imports inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from pkg import mod` names a module, not only an attribute.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def closure(entry: Path) -> tuple[set[Path], set[str]]:
    """Our modules reachable from entry (with their parent packages) and the other top-level
    modules they import."""
    ours: set[Path] = set()
    others: set[str] = set()
    pending = [entry]
    while pending:
        for name in _imports(pending.pop()):
            top = name.split(".")[0]
            if top != PACKAGE:
                others.add(top)
                continue
            parts = name.split(".")
            # Importing a.b.c runs a/__init__ and a/b/__init__ first.
            for depth in range(1, len(parts) + 1):
                path = module_file(".".join(parts[:depth]))
                if path is not None and path not in ours:
                    ours.add(path)
                    pending.append(path)
    return ours, others


def build(out: Path) -> list[Path]:
    """Write the deployable folder to out and return the package files copied into it."""
    modules, others = closure(HERE / "function_app.py")
    heavy = sorted(others - ALLOWED_THIRD_PARTY - set(sys.stdlib_module_names) - {"__future__"})
    if heavy:
        raise SystemExit(f"the Function would import {', '.join(heavy)}: keep the forwarder light")
    if out.exists():
        if any(out.iterdir()) and not (out / MARKER).exists():
            raise SystemExit(f"{out} exists and was not made by this script; not replacing it")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("built by infra/function_app/build.py; safe to delete\n")
    for name in APP_FILES:
        shutil.copy2(HERE / name, out / name)
    copied = []
    for source in sorted(modules):
        target = out / source.relative_to(REPO_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        copied.append(target)
    return copied


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / ".package", help="output folder")
    out = parser.parse_args(argv).out.resolve()
    copied = build(out)
    print(f"{out}: {', '.join(APP_FILES)} + {len(copied)} {PACKAGE} modules")


if __name__ == "__main__":
    main()

"""Mutation score per module from the results mutmut keeps under mutants/ (run from the package folder).

Printed as a Markdown table for docs/TESTING.md, followed by every surviving mutant,
so that each one can be killed by a test or explained as equivalent. With --changed-since,
prints instead the package modules a change touches (for make mutate-changed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
from collections import Counter
from pathlib import Path

PACKAGE = "fastsam_ros"
KILLED = {1, 3}
"""pytest exit codes that mean a test failed (3: an error inside pytest, still a kill)."""
TIMEOUT = {24, -24, 152, 255, 36}
SURVIVED = {0}
NO_TESTS = {5, 33}
KINDS = ("killed", "timeout", "survived", "no tests", "other")


def classify(exit_code: int | None) -> str:
    if exit_code is None:
        return "not run"
    if exit_code in KILLED:
        return "killed"
    if exit_code in TIMEOUT:
        return "timeout"
    if exit_code in SURVIVED:
        return "survived"
    if exit_code in NO_TESTS:
        return "no tests"
    return "other"


def module_name(path: str) -> str | None:
    """'core.engine' for 'fastsam_ros/core/engine.py' (a path in the package folder); None for what is not a module."""
    parts = Path(path).parts
    if len(parts) < 2 or parts[0] != PACKAGE or not path.endswith(".py") or parts[-1] == "__init__.py":
        return None
    return ".".join(parts[1:]).removesuffix(".py")


def changed_modules(base: str, root: Path) -> list[str]:
    """Modules of the package that differ between base and the working tree, new files included."""

    def git(*args: str) -> list[str]:
        return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.split()

    paths = git("diff", "--relative", "--name-only", "--diff-filter=d", base, "--", PACKAGE)
    paths += git("ls-files", "--others", "--exclude-standard", "--", PACKAGE)
    return sorted({name for name in map(module_name, paths) if name is not None})


def scores(mutants: Path, modules: set[str] | None) -> None:
    rows, survivors = [], []
    for meta in sorted((mutants / PACKAGE).rglob("*.py.meta")):
        module = module_name(str(meta.relative_to(mutants)).removesuffix(".meta"))
        if module is None or (modules is not None and module not in modules):
            continue
        exit_codes = json.loads(meta.read_text())["exit_code_by_key"]
        counts = Counter(classify(code) for code in exit_codes.values())
        tried = sum(counts[k] for k in KINDS)
        if tried == 0:
            continue
        rows.append((module, counts, tried, counts["killed"] + counts["timeout"]))
        survivors += [
            f"{name}  ({classify(code)})"
            for name, code in exit_codes.items()
            if classify(code) in ("survived", "no tests")
        ]
    print("| module | mutants run | killed | timeout | survived | no test | score |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    total = Counter()
    for module, counts, tried, caught in rows:
        total.update(counts)
        cells = [counts[k] for k in ("killed", "timeout", "survived", "no tests")]
        print(f"| {module} | {tried} | {' | '.join(map(str, cells))} | {caught / tried:.1%} |")
    tried = sum(total[k] for k in KINDS)
    if tried:
        cells = [total[k] for k in ("killed", "timeout", "survived", "no tests")]
        caught = total["killed"] + total["timeout"]
        print(f"| **all** | {tried} | {' | '.join(map(str, cells))} | {caught / tried:.1%} |")
    print()
    for name in survivors:
        print(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mutants", type=Path, default=Path("mutants"), help="mutmut's working folder")
    parser.add_argument("--modules", nargs="*", help="only these modules (as in MUTATE: core.engine ros.node ...)")
    parser.add_argument(
        "--changed-since",
        metavar="REF",
        help="print the package modules changed since this git commit (working tree and new files included)",
    )
    args = parser.parse_args()
    if args.changed_since is not None:
        print(" ".join(changed_modules(args.changed_since, Path.cwd())))
        return
    scores(args.mutants, None if args.modules is None else set(args.modules))


if __name__ == "__main__":
    main()

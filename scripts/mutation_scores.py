"""Mutation score per module from the results mutmut keeps under mutants/.

Printed as a Markdown table for docs/TESTING.md, followed by every surviving mutant,
so that each one can be killed by a test or explained as equivalent.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

KILLED = {1, 3}
"""pytest exit codes that mean a test failed (3: an error inside pytest, still a kill)."""
TIMEOUT = {24, -24, 152, 255, 36}
SURVIVED = {0}
NO_TESTS = {5, 33}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mutants", type=Path, default=Path("mutants"), help="mutmut's working folder")
    args = parser.parse_args()
    rows, survivors = [], []
    for meta in sorted((args.mutants / "fastsam_ros").glob("*.py.meta")):
        exit_codes = json.loads(meta.read_text())["exit_code_by_key"]
        counts = Counter(classify(code) for code in exit_codes.values())
        tried = sum(counts[k] for k in ("killed", "timeout", "survived", "no tests", "other"))
        if tried == 0:
            continue
        caught = counts["killed"] + counts["timeout"]
        rows.append((meta.name.removesuffix(".py.meta"), counts, tried, caught))
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
    tried = sum(total[k] for k in ("killed", "timeout", "survived", "no tests", "other"))
    if tried:
        cells = [total[k] for k in ("killed", "timeout", "survived", "no tests")]
        caught = total["killed"] + total["timeout"]
        print(f"| **all** | {tried} | {' | '.join(map(str, cells))} | {caught / tried:.1%} |")
    print()
    for name in survivors:
        print(name)


if __name__ == "__main__":
    main()

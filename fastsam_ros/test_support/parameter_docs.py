"""config/fastsam.yaml and the parameter table of docs/PARAMETERS.md, rendered from the parameter table.

`python -m test_support.parameter_docs` rewrites both after a parameter changes;
test/unit/test_config.py fails while either differs from what this renders.
"""

from __future__ import annotations

import json
import textwrap

from fastsam_ros.core.parameters import PARAMETERS, ParameterSpec
from test_support.checkout import PACKAGE_FOLDER, REPOSITORY

YAML_PATH = PACKAGE_FOLDER / "config" / "fastsam.yaml"
TABLE_PATH = REPOSITORY / "docs" / "PARAMETERS.md"
TABLE_START = "<!-- parameter table: rendered from fastsam_ros/fastsam_ros/core/parameters.py -->"
TABLE_END = "<!-- end of parameter table -->"

YAML_HEADER = """\
# Parameters of the fastsam node, rendered from fastsam_ros/core/parameters.py (do not edit by hand:
# python -m test_support.parameter_docs). Start with:
#   fastsam_node --ros-args --params-file config/fastsam.yaml -r image:=/camera/image_raw
# Parameters marked "Run time" can also be changed while the node runs (ros2 param set).
fastsam:
  ros__parameters:
"""


def _value(value: object) -> str:
    """A YAML flow value (JSON is a subset of YAML)."""
    return json.dumps(value)


def _doc(spec: ParameterSpec) -> str:
    allowed = spec.allowed()
    text = ("Run time. " if spec.runtime else "") + spec.description
    return text + (f" Allowed: {allowed.replace('`', '')}." if allowed else "")


def render_yaml() -> str:
    lines = [YAML_HEADER.rstrip("\n")]
    for spec in PARAMETERS:
        lines += textwrap.wrap(_doc(spec), width=92, initial_indent="    # ", subsequent_indent="    # ")
        lines.append(f"    {spec.name}: {_value(spec.default)}")
    return "\n".join(lines) + "\n"


def render_table() -> str:
    rows = [TABLE_START, "| parameter | type | default | run time | allowed | what |", "|---|---|---|---|---|---|"]
    for spec in PARAMETERS:
        cells = (f"`{spec.name}`", spec.type_name, f"`{_value(spec.default)}`", "yes" if spec.runtime else "")
        rows.append(f"| {' | '.join(cells)} | {spec.allowed()} | {spec.description} |")
    rows.append(TABLE_END)
    return "\n".join(rows)


def page_with_table(page: str) -> str:
    start, end = page.index(TABLE_START), page.index(TABLE_END) + len(TABLE_END)
    return page[:start] + render_table() + page[end:]


def main() -> int:
    YAML_PATH.write_text(render_yaml())
    TABLE_PATH.write_text(page_with_table(TABLE_PATH.read_text()))
    print(f"wrote {YAML_PATH.relative_to(REPOSITORY)} and the parameter table of {TABLE_PATH.relative_to(REPOSITORY)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

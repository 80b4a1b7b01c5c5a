"""The options tables of docs/USAGE.md, rendered from the tools' own command lines.

`python -m test_support.tool_options` rewrites them after an option changes;
test/unit/test_tool_defaults.py fails while they differ from what this renders.
"""

from __future__ import annotations

import argparse

from fastsam_ros.tools import export, play, record, web
from test_support.checkout import REPOSITORY

USAGE_PATH = REPOSITORY / "docs" / "USAGE.md"
TABLES_START = "<!-- options tables: rendered from the tools' command_line() -->"
TABLES_END = "<!-- end of options tables -->"
TOOLS = (web.command_line, record.command_line, play.command_line, export.command_line)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_table(parser: argparse.ArgumentParser) -> str:
    """One tool's options: name and value form, default (where it has one) and help, as --help gives them."""
    formatter = parser._get_formatter()
    what = parser.description.removeprefix(f"{parser.prog}: ")
    rows = [f"**`{parser.prog}`**: {what}", "", "| option | default | what |", "|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = formatter._format_action_invocation(action) if action.option_strings else f"<{action.dest}>"
        if not action.option_strings or action.default in (None, argparse.SUPPRESS) or action.default is False:
            default = ""  # a positional argument, an option without a default, a flag
        elif action.default == "" or action.default == []:
            default = f"`{action.default!r}`"
        else:
            default = f"`{action.default}`"
        rows.append(f"| `{name}` | {_cell(default)} | {_cell(action.help or '')} |")
    return "\n".join(rows)


def render_tables() -> str:
    return "\n\n".join([TABLES_START, *(render_table(tool()) for tool in TOOLS), TABLES_END])


def page_with_tables(page: str) -> str:
    start, end = page.index(TABLES_START), page.index(TABLES_END) + len(TABLES_END)
    return page[:start] + render_tables() + page[end:]


def main() -> int:
    USAGE_PATH.write_text(page_with_tables(USAGE_PATH.read_text()))
    print(f"wrote the options tables of {USAGE_PATH.relative_to(REPOSITORY)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""README.md is what users configure the node from: its parameter table must list exactly the
node's parameters with their real defaults, its two commands must be the ones CI runs, and its
links into docs/ must resolve."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sgdfuse_ros.ros.launch_args import LAUNCH_ARGUMENTS
from sgdfuse_ros.ros.parameters import PARAMETERS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _section(text: str, heading: str) -> str:
    """The body of a markdown section, up to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    following = re.compile(rf"^#{{1,{len(level)}}} ", re.MULTILINE)
    end = following.search(text, start)
    return text[start : end.start() if end else len(text)]


def _parameter_rows() -> list[tuple[str, str, str]]:
    """(name, default, meaning) of each row of README's node parameter table."""
    rows = []
    for line in _section(README, "### Parameters").splitlines():
        match = re.fullmatch(r"\| `([^`]+)` \| `(.+?)` \| (.+) \|", line.strip())
        if match:
            rows.append((match[1], match[2], match[3]))
    return rows


def test_parameter_table_lists_exactly_the_node_parameters() -> None:
    documented = [name for name, _, _ in _parameter_rows()]
    declared = [spec.name for spec in PARAMETERS]
    assert len(documented) == len(set(documented)), "a parameter is listed twice"
    assert not set(declared) - set(documented), "parameters missing from README's table"
    assert not set(documented) - set(declared), "README documents parameters the node lacks"


def test_parameter_table_gives_the_real_defaults_and_descriptions() -> None:
    rows = {name: (default, meaning) for name, default, meaning in _parameter_rows()}
    for spec in PARAMETERS:
        default, meaning = rows[spec.name]
        assert default == json.dumps(spec.default, ensure_ascii=False), spec.name
        # The table may add advice after the node's own description, never contradict it.
        assert meaning.startswith(spec.description), spec.name


def test_launch_arguments_are_documented() -> None:
    section = _section(README, "## ROS 2 node")
    missing = [arg.name for arg in LAUNCH_ARGUMENTS if f"`{arg.name}`" not in section]
    assert not missing, f"launch arguments missing from README: {missing}"


def test_readme_commands_are_the_ones_ci_runs() -> None:
    quick_start = _section(README, "## Quick start (fresh Debian/Ubuntu, Python 3.10+)")
    commands = re.findall(r"```bash\n(.+?)\n```", quick_start, re.DOTALL)
    assert len(commands) == 2, "the quick start holds the setup+demo and the test command"
    setup_and_demo, test_command = commands
    ci = (ROOT / ".ci" / "run").read_text()
    pip_install = setup_and_demo.split(" && ")[2]
    assert pip_install.startswith("pip install ")
    assert pip_install.removeprefix("pip install ") in ci  # CI adds only -q
    assert test_command in ci


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)  # '#' in code is no heading
    headings = re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_links_between_readme_and_docs_resolve() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", page.read_text()):
            if "://" in target:
                continue
            linked = (page.parent / target) if target else page
            assert linked.exists(), f"{page.name} links to missing {target}"
            if anchor:
                assert anchor in _anchors(linked.read_text()), (
                    f"{page.name}: no #{anchor} in {target}"
                )

"""The README's Python examples run, so they cannot rot.

Every fenced ```python block of README.md is executed, in order, in one namespace (a
block may use what an earlier one imported or built), in a temporary working directory
that holds ``ratings.csv``: a small file with the header ``user,item,rating,timestamp``
and string ids (``007``, ``7``, a unicode id), the file the README's examples read. Keep
the examples small enough to run in a few seconds.

A block that truly cannot run here (it needs a GPU, a cluster, a download) opts out with
the HTML comment ``<!-- not-tested -->`` on the line before its opening fence (blank lines
between are allowed); it is still parsed, as Python, so a syntax error in it fails.
The ```toml examples are checked too: valid TOML, and run configs load and read their data.
"""

from __future__ import annotations

import ast
import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from negrec import LOSSES, MODELS, SAMPLERS
from negrec.experiment.config import ExperimentConfig
from negrec.experiment.data import build_split
from negrec.experiment.tune_plan import parse_plan

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

README = Path(__file__).resolve().parents[1] / "README.md"
NOT_TESTED = "<!-- not-tested -->"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@dataclass(frozen=True)
class Block:
    """One ```python block: its source, the README line of its first code line, and
    whether the line before its fence opts it out."""

    code: str
    line: int
    tested: bool


_FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")


def python_blocks(markdown: str) -> list[Block]:
    """The ```python (or ```py) blocks of ``markdown``, in order."""
    return fenced_blocks(markdown, ("python", "py"))


def fenced_blocks(markdown: str, languages: tuple[str, ...]) -> list[Block]:
    """The fenced blocks of ``markdown`` in one of ``languages``, in order."""
    lines = markdown.splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index].strip())
        if not match:
            index += 1
            continue
        fence, language = match.group(1), match.group(2).lower()
        end = index + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        if language in languages:
            before = [line.strip() for line in lines[:index] if line.strip()]
            tested = not (before and before[-1] == NOT_TESTED)
            blocks.append(Block("\n".join(lines[index + 1 : end]) + "\n", index + 2, tested))
        index = end + 1
    return blocks


def write_ratings(path: Path) -> None:
    """36 users (incl. '007', '7' and 'ünï') x 12 events over 40 items, ratings 1..5,
    increasing Unix timestamps, a few repeated (user, item) pairs."""
    rng = np.random.default_rng(0)
    users = ["007", "7", "ünï"] + [f"u{u:03d}" for u in range(33)]
    rows = ["user,item,rating,timestamp"]
    time = 1_700_000_000
    for user in users:
        for item in rng.choice(40, size=12, replace=True):
            time += int(rng.integers(1, 3600))
            rows.append(f"{user},item{item:02d},{rng.integers(1, 6)},{time}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def test_the_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 2, "expected the Quick tour's Python examples in README.md"
    write_ratings(tmp_path / "ratings.csv")
    monkeypatch.chdir(tmp_path)
    # the blocks run as a real module (dataclasses look their module up in sys.modules),
    # and what they register (the README's example loss) is undone after the test
    module = types.ModuleType("__readme__")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for registry in (LOSSES, MODELS, SAMPLERS):
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    namespace = module.__dict__
    for block in blocks:
        compiled = compile(block.code, f"README.md:{block.line}", "exec")
        if not block.tested:
            continue
        try:
            exec(compiled, namespace)
        except Exception as err:
            pytest.fail(
                f"the README's Python block at line {block.line} failed: "
                f"{type(err).__name__}: {err}"
            )


def test_the_readme_config_examples_load(tmp_path, monkeypatch):
    """Every ```toml block is valid TOML; one that is a run config (not a grid) loads as
    one, and one reading a file reads ``ratings.csv`` here."""
    blocks = fenced_blocks(README.read_text(encoding="utf-8"), ("toml",))
    write_ratings(tmp_path / "ratings.csv")
    monkeypatch.chdir(tmp_path)
    files = 0
    for block in blocks:
        raw = tomllib.loads(block.code)
        if not block.tested or "grid" in raw:
            continue
        if "tune" in raw:  # a search space: it parses as a tuning plan
            parse_plan(raw)
            continue
        config = ExperimentConfig.from_dict(raw)
        if config.data.source == "file":
            split = build_split(config.data, config.split)
            assert "007" in split.train.user_ids.tolist()
            files += 1
    assert files >= 1, "expected the README's example of reading your own CSV"


def test_block_parser_and_the_opt_out_marker():
    markdown = "\n".join(
        [
            "text",
            "```python",
            "a = 1",
            "```",
            "```bash",
            "echo not python",
            "```",
            NOT_TESTED,
            "",
            "```python",
            "import gpu_only",
            "```",
            "````py",
            "b = '```'",
            "````",
        ]
    )
    blocks = python_blocks(markdown)
    assert [(b.code, b.line, b.tested) for b in blocks] == [
        ("a = 1\n", 3, True),
        ("import gpu_only\n", 11, False),
        ("b = '```'\n", 14, True),
    ]
    for block in blocks:
        ast.parse(block.code)

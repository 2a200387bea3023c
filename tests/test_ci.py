"""CI enforces what passes: ``.ci/run`` runs the README's test command, then ruff and mypy.

``.ci/run`` itself installs packages and runs the whole suite, so it is not run here; these
checks pin its shape: the three lint steps are there, each one's failure fails the script,
and the README's test command installs the pinned tools they need.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CI = ROOT / ".ci" / "run"
CHECKS = ("ruff check src tests benchmarks", "ruff format --check src tests benchmarks", "mypy")


def test_ci_script_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(CI)], check=True)


def test_ci_runs_ruff_and_mypy_after_the_tests_and_fails_on_any() -> None:
    text = CI.read_text(encoding="utf-8")
    tests_at = text.index('bash -euo pipefail -c "$cmd"')
    for check in CHECKS:
        assert f'"{check}"' in text, check
        assert text.index(f'"{check}"') > tests_at, f"{check} runs before the tests"
    assert "|| status=1" in text and 'exit "$status"' in text


def test_the_readme_test_command_installs_the_pinned_lint_tools() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = readme.split("<!-- test-command -->", 1)[1].split("```")[1]
    assert "'.[test]'" in command and "python3 -m venv .venv" in command
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    test = extra["project"]["optional-dependencies"]["test"]
    for tool in ("ruff", "mypy"):
        assert any(re.fullmatch(rf"{tool}==[\d.]+", req) for req in test), (tool, test)

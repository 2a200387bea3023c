"""The ``negrec`` command imports its sub-command modules loudly.

Regression test: ``cli.build_parser`` used to wrap each sub-command module's import in
``try: ... except ImportError: continue``, so a module broken by a bad import (or a missing
dependency) vanished from the command line and ``negrec hardness`` answered "invalid
choice" instead of showing the error.
"""

from __future__ import annotations

import sys

import pytest

from negrec import cli


@pytest.mark.parametrize("module", cli.COMMAND_MODULES)
def test_a_sub_command_module_that_fails_to_import_fails_the_cli(monkeypatch, module):
    # None in sys.modules makes `import module` raise ImportError, as a broken import would
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=module):
        cli.main(["--help"])


def test_a_broken_import_inside_a_sub_command_module_propagates(monkeypatch, tmp_path):
    (tmp_path / "negrec_broken_commands.py").write_text(
        "import negrec_module_that_does_not_exist\n\ndef add_commands(subparsers):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "negrec_broken_commands"))
    with pytest.raises(ModuleNotFoundError, match="negrec_module_that_does_not_exist"):
        cli.build_parser()


def test_every_sub_command_module_registers_its_commands():
    parser = cli.build_parser()
    choices = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in ("run", "report", "presets", "data", "theory", "hardness", "sweep"):
        assert name in choices

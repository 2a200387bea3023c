"""The documents the code cites live in the repository, and every citation resolves.

Code, help text and tests cite ``docs/<page>.md#<anchor>``. This checks that each cited page
exists and has the anchor (an explicit ``<a id="...">`` or a heading's GitHub slug), that
the links between the docs pages resolve too, and that nothing under src/ or tests/ (or the
README or benchmarks/) cites the design and theory notes that lived outside the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CITATION = re.compile(r"docs/([\w-]+\.md)(?:#([\w-]+))?")
LINK = re.compile(r"\]\(([\w-]+\.md)(?:#([\w-]+))?\)")
# the two notes that used to be cited from outside the repo (spelled so this file is clean)
OUTSIDE = re.compile(r"\b(?:" + "THE" + "ORY|DE" + "SIGN" + r")(?:\.md|\s*§|\b)")


def _sources() -> list[Path]:
    files = [*sorted((ROOT / "src").rglob("*.py")), *sorted((ROOT / "tests").rglob("*.py"))]
    files += [*sorted((ROOT / "benchmarks").glob("*.py")), ROOT / "README.md"]
    return files


def slug(heading: str) -> str:
    """GitHub's anchor for a markdown heading: lower case, punctuation dropped, '-' for ' '."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = page.read_text(encoding="utf-8")
    found = set(re.findall(r'<a id="([\w-]+)"></a>', text))
    found |= {slug(h) for h in re.findall(r"^#+\s+(.*)$", text, flags=re.MULTILINE)}
    return found


def test_slug_follows_github() -> None:
    assert slug("The run directory") == "the-run-directory"
    assert slug("Theorem 3: OPAUC sandwiches Recall@K") == "theorem-3-opauc-sandwiches-recallk"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_cited_docs_anchor_exists(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    missing = []
    for page, anchor in CITATION.findall(text):
        target = DOCS / page
        if not target.is_file():
            missing.append(f"docs/{page}")
        elif anchor and anchor not in anchors(target):
            missing.append(f"docs/{page}#{anchor}")
    assert not missing, f"{path.relative_to(ROOT)} cites what docs/ lacks: {missing}"


def test_links_between_docs_pages_resolve() -> None:
    missing = []
    for page in sorted(DOCS.glob("*.md")):
        for target, anchor in LINK.findall(page.read_text(encoding="utf-8")):
            if not (DOCS / target).is_file():
                missing.append(f"{page.name} -> {target}")
            elif anchor and anchor not in anchors(DOCS / target):
                missing.append(f"{page.name} -> {target}#{anchor}")
    assert not missing, missing


def test_nothing_cites_notes_outside_the_repository() -> None:
    hits = [
        f"{path.relative_to(ROOT)}:{i}: {line.strip()}"
        for path in _sources()
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not hits, "\n".join(hits)


def test_the_theory_command_points_to_the_docs(capsys: pytest.CaptureFixture[str]) -> None:
    from negrec.cli import main

    with pytest.raises(SystemExit):
        main(["theory", "--help"])
    assert "docs/theory.md" in capsys.readouterr().out

"""The self-contained HTML report (``negrec report --html``).

Hand-built run directories (no training) that make ``negrec report`` produce every table
and plot it has: the per-run table, mean ± std over seeds with the paired t-test, the
validation curves (per run and mean per loss), metric vs K and the bound monitor. The page
must hold all of them, every PNG embedded byte for byte, each run's config, and nothing
that needs the network. A second test opens it in headless Chromium: a non-blank
screenshot, every image decoded (``naturalWidth > 0``), no console error.
"""

from __future__ import annotations

import base64
import html
import io
import os
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from conftest import write_fake_run

from negrec.cli import main
from negrec.experiment.aggregate import aggregate, markdown_table
from negrec.experiment.report import comparison_table, load_runs
from negrec.experiment.report_html import render_html

CHROMIUM = Path("/usr/bin/chromium")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LOSSES = ("bpr", "cce")
KS = (1, 4)
SEEDS = (0, 1, 2)


def write_run(folder: Path, loss: str, k: int, seed: int) -> Path:
    """A complete run directory with bound-monitor columns, written by hand."""
    value = 0.1 + 0.02 * k + (0.03 + 0.002 * seed * seed if loss == "cce" else 0.0) + 0.005 * seed
    history = []
    for epoch in (1, 2, 3):
        row = {"epoch": epoch, "loss": 1.0 / epoch, "valid/ndcg@20": value * epoch / 3}
        for bound in ("cce", "bpr", "bce"):
            row[f"bound/k={k}/{bound}/holds"] = 0.5 + 0.1 * epoch
            row[f"bound/k={k}/{bound}/predicted"] = 0.4 + 0.1 * epoch
        history.append(row)
    return write_fake_run(
        folder,
        f"loss={loss},sampler.k={k},seed={seed}",
        loss=loss,
        seed=seed,
        k=k,
        history=history,
        valid={"ndcg@20": value},
        test={"ndcg@20": value - 0.01, "recall@20": 2 * value},
        config={"monitor": {"enabled": True}},
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, Path, str]:
    """``negrec report`` over 12 runs: (runs folder, report folder, stdout)."""
    root = tmp_path_factory.mktemp("html")
    folder = root / "sweep"
    for loss in LOSSES:
        for k in KS:
            for seed in SEEDS:
                write_run(folder, loss, k, seed)
    import contextlib

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["report", str(folder)]) == 0
    return folder, root, out.getvalue()


class PageParser(HTMLParser):
    """Tables (as rows of cell texts), <img> srcs, every href/src, and <pre> texts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self.links: list[str] = []
        self.pres: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._pre: list[str] | None = None
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        attr = dict(attrs)
        for key in ("href", "src"):
            if attr.get(key):
                self.links.append(str(attr[key]))
        if tag == "table":
            self._table = str(attr.get("id"))
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []
        elif tag == "img":
            self.images.append(str(attr.get("src")))
        elif tag == "pre":
            self._pre = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag == "pre" and self._pre is not None:
            self.pres.append("".join(self._pre))
            self._pre = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._pre is not None:
            self._pre.append(data)


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    parser.close()
    return parser


def markdown_rows(table: str) -> list[list[str]]:
    """Cells of a markdown table (header and body; no separator; ** and ` dropped)."""
    rows = []
    for line in table.splitlines():
        if line.startswith("|---"):
            continue
        cells = [c.strip().replace("**", "").replace("`", "") for c in line.strip("|").split("|")]
        rows.append(cells)
    return rows


def test_the_page_holds_every_table_plot_and_config(report):
    folder, out, stdout = report
    page_path = out / "sweep-report.html"  # named after the folder given
    assert f"html: {page_path}" in stdout
    page = page_path.read_text(encoding="utf-8")
    parsed = parse(page)
    runs = load_runs([folder])

    # the per-run table: the same cells as the printed markdown table
    assert parsed.tables["table-runs"] == markdown_rows(comparison_table(runs))
    # mean +- std over seeds, group cells start with the label then list the runs
    agg = aggregate(runs)
    expected = markdown_rows(markdown_table(agg))
    got = parsed.tables["table-aggregate"]
    assert len(got) == len(expected) == 1 + len(LOSSES) * len(KS)
    assert got[0] == expected[0]
    for row, want in zip(got[1:], expected[1:], strict=True):
        assert row[0].startswith(want[0]) and row[1:] == want[1:]
    # the paired t-test sentence and the LaTeX table
    assert "Paired t-test on test ndcg@20" in page
    assert any("\\begin{tabular}" in pre for pre in parsed.pres)

    # every PNG the report wrote, embedded byte for byte
    written = sorted(out.glob("*.png"))
    names = {p.name for p in written}
    assert names == {
        "sweep-valid-ndcg@20.png",
        "sweep-valid-ndcg@20-mean.png",
        "sweep-ndcg@20-vs-k.png",
        "sweep-bound-monitor.png",
    }
    prefix = "data:image/png;base64,"
    assert all(src.startswith(prefix) for src in parsed.images)
    embedded = sorted(base64.b64decode(src[len(prefix) :]) for src in parsed.images)
    assert embedded == sorted(p.read_bytes() for p in written)

    # each run's config, escaped, in its own block
    for run in runs:
        assert html.escape((run.path / "config.toml").read_text()) in page
    assert sum("[monitor]" in pre for pre in parsed.pres) == len(runs)

    # self-contained: no network reference, no external resource
    assert "http://" not in page and "https://" not in page
    assert not {"link", "iframe", "object", "embed"} & parsed.tags
    assert "@import" not in page and "url(" not in page
    for ref in parsed.links:
        assert ref.startswith(("#", "data:image/png;base64,")), ref


def test_text_from_runs_is_escaped(tmp_path):
    folder = tmp_path / "runs"
    path = write_run(folder, "cce", 4, 0)
    data = (path / "summary.json").read_text().replace("loss=cce", "<script>alert(1)</script>")
    (path / "summary.json").write_text(data)
    page = render_html(load_runs([folder]), [])
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_html_option_and_atomic_write(tmp_path):
    folder = tmp_path / "runs"
    write_run(folder, "bpr", 1, 0)
    target = tmp_path / "elsewhere" / "page.html"
    argv = ["report", str(folder), "--plot", str(tmp_path / "p.png"), "--html", str(target)]
    assert main(argv) == 0
    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert [p.name for p in target.parent.iterdir()] == ["page.html"]  # no temp file left


def _chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={tmp / 'profile'}",
    ]
    env = {**os.environ, "HOME": str(tmp)}
    return subprocess.run(
        [str(CHROMIUM), *flags, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium: apt-get install chromium")
def test_the_page_renders_in_headless_chromium(report, tmp_path):
    _, out, _ = report
    page = out / "sweep-report.html"
    n_images = len(parse(page.read_text(encoding="utf-8")).images)
    url = page.resolve().as_uri()

    dom = _chromium("--virtual-time-budget=10000", "--dump-dom", url, tmp=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    # the page's own script counted the images that decoded (naturalWidth > 0)
    assert f'data-images-ok="{n_images}/{n_images}"' in dom.stdout, dom.stderr[-2000:]
    for table in ("table-runs", "table-aggregate"):
        assert f'id="{table}"' in dom.stdout
    # the page logs nothing: any console message (an uncaught error first) is a failure
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console

    shot = tmp_path / "shot.png"
    result = _chromium(
        f"--screenshot={shot}", "--window-size=1280,2400", "--hide-scrollbars", url, tmp=tmp_path
    )
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    assert shot.read_bytes().startswith(PNG_MAGIC)
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (2400, 1280)
    assert pixels.std() > 10  # not a blank page
    assert (pixels < 128).mean() > 0.005  # text, table borders, plot lines


def test_report_without_repeated_seeds_still_writes_the_page(tmp_path):
    folder = tmp_path / "runs"
    write_run(folder, "bpr", 1, 0)
    write_run(folder, "cce", 1, 0)
    assert main(["report", str(folder)]) == 0
    parsed = parse((tmp_path / "runs-report.html").read_text(encoding="utf-8"))
    assert set(parsed.tables) == {"table-runs"}  # no aggregate without repeated seeds
    assert len(parsed.tables["table-runs"]) == 3
    assert len(parsed.images) == 2  # validation curves and the bound monitor

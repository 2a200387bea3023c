"""One self-contained HTML page of a report: every table, every plot, every config.

``negrec report`` writes markdown and LaTeX tables and PNG plots as separate files; this
page gathers them so a report can be mailed, archived or opened offline as one file. It
needs nothing outside itself: the PNGs are embedded as base64 ``data:`` URIs, the CSS is
inline, there are no fonts, scripts or links from elsewhere. Every piece of text taken
from the runs (names, labels, configs) is HTML-escaped.

The page holds, in order: the per-run table (test metrics at the epoch selected on
validation; each run name links to its config), when runs repeat over seeds the table of
mean ± std per group with the paired t-test between the best and the runner-up (and the
LaTeX source of that table), every plot the report wrote, and each run's resolved
``config.toml`` in a collapsible block. A small inline script marks the page with
``data-images-ok="<decoded>/<images>"`` once loaded (tests read it from a headless
browser) and opens the config a link points to.
"""

from __future__ import annotations

import base64
import html
import math
import struct
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from negrec.atomic import atomic_write_text
from negrec.errors import NegrecError
from negrec.experiment.aggregate import (
    Aggregate,
    PairedTest,
    Report,
    format_cell,
    latex_table,
    runs_cell,
)
from negrec.experiment.report import RunRecord, comparison_rows

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #1b1b1b; background: #fff; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f2f2f2; } td.label, th.label { text-align: left; }
td.best { font-weight: bold; background: #eef6ee; }
.table-wrap { overflow-x: auto; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
details { margin: 0.4em 0; } summary { cursor: pointer; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.runs-of-group { color: #555; font-size: 0.85em; }
p.meta { color: #555; }
"""

# Runs in the browser after load: counts the images that decoded (naturalWidth > 0) into
# body[data-images-ok], and opens a <details> reached through a link (#run-N).
_SCRIPT = """
(function () {
  function checkImages() {
    var images = Array.prototype.slice.call(document.images);
    var decoded = images.filter(function (img) { return img.complete && img.naturalWidth > 0; });
    document.body.setAttribute("data-images-ok", decoded.length + "/" + images.length);
  }
  function openTarget() {
    var target = location.hash ? document.getElementById(location.hash.slice(1)) : null;
    if (target && target.tagName === "DETAILS") { target.open = true; }
  }
  if (document.readyState === "complete") { checkImages(); }
  else { window.addEventListener("load", checkImages); }
  window.addEventListener("hashchange", openTarget);
  openTarget();
})();
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _code_spans(sentence: str) -> str:
    """Escape a sentence and show its ```code``` spans (the markdown form) as <code>."""
    parts = sentence.split("`")
    return "".join(
        f"<code>{_e(part)}</code>" if i % 2 else _e(part) for i, part in enumerate(parts)
    )


def _anchor(index: int) -> str:
    return f"run-{index}"


def png_data_uri(path: Path) -> tuple[str, int, int]:
    """``data:image/png;base64,...`` of a PNG file, with its width and height in pixels."""
    data = path.read_bytes()
    if not data.startswith(PNG_MAGIC) or len(data) < 24:
        raise NegrecError(f"{path}: not a PNG file")
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii"), width, height


def runs_table(runs: list[RunRecord]) -> str:
    """The per-run comparison table; each run name links to its config block."""
    header, rows = comparison_rows(runs)
    head = "".join(
        f'<th class="label">{_e(h)}</th>' if c < 4 else f"<th>{_e(h)}</th>"
        for c, h in enumerate(header)
    )
    body = []
    for i, cells in enumerate(rows):
        tds = [f'<td class="label"><a href="#{_anchor(i)}">{_e(cells[0])}</a></td>']
        tds += [f'<td class="label">{_e(c)}</td>' for c in cells[1:4]]
        tds += [f"<td>{_e(c)}</td>" for c in cells[4:]]
        body.append("<tr>" + "".join(tds) + "</tr>")
    return _table("runs", head, body)


def aggregate_table(agg: Aggregate, runs: list[RunRecord]) -> str:
    """Mean ± std per group (best mean per column marked), each group listing its runs."""
    index = {id(run): i for i, run in enumerate(runs)}
    head = '<th class="label">group</th><th>runs</th>'
    head += "".join(f"<th>{_e(c)}</th>" for c in agg.columns)
    best = [agg.best(c) for c in range(len(agg.columns))]
    body = []
    for g, (group, row) in enumerate(zip(agg.groups, agg.cells, strict=True)):
        links = ", ".join(
            f'<a href="#{_anchor(index[id(run)])}">{_e(run.name)}</a>'
            for run in group.runs
            if id(run) in index
        )
        label = f"<code>{_e(group.label)}</code>"
        if links:
            label += f'<div class="runs-of-group">{links}</div>'
        tds = [f'<td class="label">{label}</td>', f"<td>{_e(runs_cell(group))}</td>"]
        for c, (mean, std) in enumerate(row):
            text = format_cell(mean, std)
            marked = best[c] == g and not math.isnan(mean)
            tds.append(f'<td class="best">{_e(text)}</td>' if marked else f"<td>{_e(text)}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    return _table("aggregate", head, body)


def _table(name: str, head: str, body: list[str]) -> str:
    return (
        f'<div class="table-wrap"><table id="table-{name}">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _figure(path: Path) -> str:
    uri, width, height = png_data_uri(path)
    return (
        f'<figure><img src="{uri}" width="{width}" height="{height}" alt="{_e(path.stem)}">'
        f"<figcaption>{_e(path.name)}</figcaption></figure>"
    )


def _config_block(index: int, run: RunRecord) -> str:
    config = (run.path / "config.toml").read_text(encoding="utf-8")
    return (
        f'<details id="{_anchor(index)}"><summary><code>{_e(run.name)}</code> '
        f'<span class="runs-of-group">{_e(run.path)}</span></summary>'
        f"<pre>{_e(config)}</pre></details>"
    )


def render_html(
    runs: list[RunRecord],
    plots: Sequence[Path],
    report: Report | None = None,
    *,
    title: str = "negrec report",
) -> str:
    """The page as a string: ``runs``' table, the aggregate of ``report`` (when given),
    the ``plots`` (PNG files, embedded) and every run's config."""
    from negrec import __version__

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    selection = runs[0].summary.get("selection_metric", "ndcg@20") if runs else "ndcg@20"
    contents = [("runs", "Runs")]
    sections = [
        '<section id="runs"><h2>Runs</h2>'
        f"<p>Test metrics at the epoch selected on validation {_e(selection)}; "
        "a run's name links to its config.</p>"
        f"{runs_table(runs)}</section>"
    ]
    if report is not None:
        test = report.test
        sentence = test.describe() if isinstance(test, PairedTest) else test
        sentence = sentence if sentence.endswith(".") else sentence + "."
        contents.append(("aggregate", "Mean ± std over seeds"))
        sections.append(
            '<section id="aggregate"><h2>Mean ± std over seeds</h2>'
            "<p>Mean ± sample standard deviation over each group's seeds; best mean per "
            "column highlighted.</p>"
            f"{aggregate_table(report.aggregate, runs)}"
            f'<p id="paired-test">{_code_spans(sentence)}</p>'
            "<details><summary>LaTeX table</summary>"
            f"<pre>{_e(latex_table(report.aggregate, test))}</pre></details></section>"
        )
    if plots:
        contents.append(("plots", "Plots"))
        sections.append(
            '<section id="plots"><h2>Plots</h2>'
            + "".join(_figure(Path(p)) for p in plots)
            + "</section>"
        )
    contents.append(("configs", "Configs"))
    sections.append(
        '<section id="configs"><h2>Configs</h2>'
        "<p>Each run's resolved <code>config.toml</code>.</p>"
        + "".join(_config_block(i, run) for i, run in enumerate(runs))
        + "</section>"
    )
    nav = " · ".join(f'<a href="#{key}">{_e(text)}</a>' for key, text in contents)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>"
        f"<h1>{_e(title)}</h1>"
        f'<p class="meta">{len(runs)} run(s); written {_e(stamp)} by negrec '
        f"{_e(__version__)}.</p><nav>{nav}</nav>\n"
        + "\n".join(sections)
        + f"\n<script>{_SCRIPT}</script></body></html>\n"
    )


def write_html(
    path: str | Path,
    runs: list[RunRecord],
    plots: Sequence[Path],
    report: Report | None = None,
) -> Path:
    """Write :func:`render_html` to ``path`` atomically (temp file, then rename)."""
    return atomic_write_text(path, render_html(runs, plots, report))


def report_plots(files: Sequence[Path]) -> list[Path]:
    """The PNG files among a report's outputs, each once, in order."""
    return list(dict.fromkeys(Path(f) for f in files if Path(f).suffix.lower() == ".png"))

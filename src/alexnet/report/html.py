"""One self-contained HTML page: inline CSS, no external resource, figures beside it.

Figures are linked relative to the page (``figures/*.png`` next to ``report.html``), or
embedded as base64 data URIs with ``embed_images=True`` so the page alone can be mailed.
A small inline script checks after loading that every figure decoded (``naturalWidth``) and
writes the count into ``<body data-images-loaded="n/m">``; a figure that did not load gets a
visible note instead of a silent broken-image icon.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from alexnet.runtime.outputs import check_output_file, write_text


@dataclass
class Table:
    title: str
    header: Sequence[str]
    rows: Sequence[Sequence[object]]
    note: str = ""
    id: str = ""


@dataclass
class FigureRef:
    title: str
    path: Path  # the PNG on disk
    caption: str = ""


@dataclass
class Page:
    title: str
    subtitle: str = ""
    results: list[Table] = field(default_factory=list)
    figures: list[FigureRef] = field(default_factory=list)
    details: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1150px; color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.1em; } h2 { font-size: 1.2em; margin-top: 1.8em;
     border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.subtitle { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.7em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0 2em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; } .note { color: #666; font-size: 0.9em; }
.missing { color: #b00; font-weight: bold; }
"""

# Marks the page with how many figures loaded; replaces a broken figure with a visible note.
CHECK_IMAGES = """
window.addEventListener("load", function () {
  var images = document.querySelectorAll("img"), loaded = 0;
  images.forEach(function (img) {
    if (img.complete && img.naturalWidth > 0) { loaded += 1; return; }
    var note = document.createElement("p");
    note.className = "missing";
    note.textContent = "figure not found: " + img.getAttribute("data-file") + " (re-run alexnet report)";
    img.replaceWith(note);
  });
  document.body.setAttribute("data-images-loaded", loaded + "/" + images.length);
});
"""


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>'
    if isinstance(value, int):
        return f'<td class="num">{value:,}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def table_html(table: Table) -> str:
    attribute = f' id="{html.escape(table.id)}"' if table.id else ""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in table.header)
    body = "\n".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in table.rows)
    note = f'<p class="note">{html.escape(table.note)}</p>' if table.note else ""
    return (f"<h2>{html.escape(table.title)}</h2>\n<table{attribute}>\n<thead><tr>{head}</tr></thead>\n"
            f"<tbody>\n{body}\n</tbody>\n</table>\n{note}")


def figure_html(figure: FigureRef, page_dir: Path, embed: bool) -> str:
    if embed:
        data = base64.b64encode(figure.path.read_bytes()).decode("ascii")
        source = f"data:image/png;base64,{data}"
    else:
        source = Path(os.path.relpath(figure.path, page_dir)).as_posix()
    caption = f"<figcaption>{html.escape(figure.caption)}</figcaption>" if figure.caption else ""
    return (f"<h2>{html.escape(figure.title)}</h2>\n<figure><img src=\"{html.escape(source)}\" "
            f"alt=\"{html.escape(figure.title)}\" data-file=\"{html.escape(figure.path.name)}\">"
            f"{caption}</figure>")


def write_page(page: Page, path: str | os.PathLike[str], embed_images: bool = False) -> Path:
    path = check_output_file(path)
    parts = [f"<h1>{html.escape(page.title)}</h1>"]
    if page.subtitle:
        parts.append(f'<p class="subtitle">{html.escape(page.subtitle)}</p>')
    parts.extend(f'<p class="note">{html.escape(note)}</p>' for note in page.notes)
    parts.extend(table_html(t) for t in page.results)
    parts.extend(figure_html(f, path.parent, embed_images) for f in page.figures)
    parts.extend(table_html(t) for t in page.details)
    document = (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(page.title)}</title>\n<style>{STYLE}</style>\n"
        f"<script>{CHECK_IMAGES}</script>\n</head>\n<body>\n" + "\n".join(parts) + "\n</body>\n</html>\n"
    )
    return write_text(path, document)

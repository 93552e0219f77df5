"""MkDocs hook: everything a page shows is computed by graphgrad while the docs build.

- ``<!-- show: NAME -->`` puts the result of the function NAME from ``docs/computed``
  on the page (a plot, a drawing, a table of numbers, printed text or a formula),
  captioned with where it came from.
- ``$...$`` and ``$$...$$`` are drawn as SVG by matplotlib's mathtext: no math
  script or web font is loaded, so pages work offline and from ``file://``.
- The examples and the notebook are copied into the site, so each page links
  the code that computes what it shows.

Nothing is cached between builds: a failing computation fails the build.
"""
from __future__ import annotations

import html
import pathlib
import re
import sys

from mkdocs.structure.files import File

DOCS = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))

from computed import PROVENANCE, Shown, fmt, load_all, mathsvg, reset  # noqa: E402

EXAMPLES = DOCS.parent / "examples"
CODE = re.compile(r"(```.*?```|`[^`\n]*`)", re.S)
DISPLAY_MATH = re.compile(r"\$\$(.+?)\$\$", re.S)
INLINE_MATH = re.compile(r"(?<![\\$])\$(?!\s)([^$\n]+?)(?<!\s)\$")


class Page:
    """Writes one page's figures and formulas into the site and returns the HTML that shows them."""

    def __init__(self, page, config):
        self.site = pathlib.Path(config["site_dir"])
        self.up = "../" * page.file.src_uri.count("/")
        (self.site / "figures" / "math").mkdir(parents=True, exist_ok=True)

    def math(self, tex, display=False):
        name = mathsvg.file_name(tex, display)
        data, depth = mathsvg.svg(tex, size=15.0 if display else 12.5)
        (self.site / "figures" / "math" / name).write_bytes(data)
        img = (f'<img class="math" src="{self.up}figures/math/{name}" alt="{html.escape(mathsvg.plain(tex))}" '
               f'style="vertical-align: -{depth:.1f}pt">')
        return f'<p class="math-display">{img}</p>' if display else img

    def figure(self, name, value):
        path = self.site / "figures" / f"{name}.svg"
        if hasattr(value, "savefig"):  # a matplotlib figure
            import matplotlib.pyplot as plt

            value.savefig(path, format="svg", bbox_inches="tight")
            plt.close(value)
        else:  # a graphviz drawing
            path.write_bytes(value.pipe(format="svg"))
        return f'<img src="{self.up}figures/{name}.svg" alt="{name}">'

    def shown(self, name, item: Shown, index):
        key = f"{name}_{index}" if index else name
        if item.kind in ("plot", "drawing"):
            body = self.figure(key, item.value)
        elif item.kind == "numbers":
            header, rows = item.value
            cells = lambda row, tag: "".join(f"<{tag}>{fmt(c)}</{tag}>" for c in row)  # noqa: E731
            body = (f"<table><thead><tr>{cells(header, 'th')}</tr></thead><tbody>"
                    + "".join(f"<tr>{cells(r, 'td')}</tr>" for r in rows) + "</tbody></table>")
        elif item.kind == "text":
            body = f"<pre><code>{html.escape(item.value)}</code></pre>"
        else:
            body = self.math(mathsvg.latex(item.value), display=True)
        caption = re.sub(r"`([^`]+)`", r"<code>\1</code>", self.inline(html.escape(item.caption, quote=False)))
        return (f'<figure class="computed" data-kind="{item.kind}" data-name="{key}">{body}<figcaption>'
                f'{caption} <span class="provenance">{PROVENANCE[item.kind]}</span></figcaption></figure>')

    def inline(self, text):
        text = DISPLAY_MATH.sub(lambda m: self.math(m.group(1).strip(), display=True), text)
        return INLINE_MATH.sub(lambda m: self.math(m.group(1)), text)


def on_config(config):
    reset()
    load_all()
    return config


def on_files(files, config):
    """The examples and the notebook go into the site beside the pages that link them."""
    for path in sorted([*EXAMPLES.glob("*.py"), EXAMPLES / "tour.ipynb"]):  # _cli.py too: the examples import it
        files.append(File.generated(config, f"examples/{path.name}", abs_src_path=str(path)))
    return files


def on_page_markdown(markdown, page, config, files):
    shows = load_all()
    out = Page(page, config)

    def show(match):
        result = shows[match.group(1)]()
        items = result if isinstance(result, list) else [result]
        return "\n\n".join(out.shown(match.group(1), item, i) for i, item in enumerate(items)) + "\n"

    parts = CODE.split(markdown)
    for i in range(0, len(parts), 2):  # even parts are outside code: there math and markers are live
        parts[i] = re.sub(r"<!-- show: (\w+) -->", show, out.inline(parts[i]))
    return "".join(parts)

"""The docs build with MkDocs --strict (warnings are errors), everything on the topic pages computed by
graphgrad while building; every claim of the topic pages is shown; no page loads anything remote."""
import html.parser
import os
import pathlib
import re
import subprocess
import sys

import pytest

import graphgrad as gg

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings")
pytest.importorskip("matplotlib")
ROOT = pathlib.Path(__file__).parent.parent

# the claims each topic page demonstrates, one section (an h2 starting with the id) per claim
CLAIMS = {
    "backprop": "B1 B2 B3 B4 B5",
    "activations": "A1 A2 A3 A4 A5 A6 A7",
    "regularization": "R1 R2 R3 R4",
    "cnn": "C1 C2 C3 C4",
    "resnet": "N1 N2 N3",
    "unet": "U1 U2 U3 U4 U5",
    "rnn": "T1 T2 T3 T4",
    "lstm": "L1 L2 L3 L4",
}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """One strict build for the module, with an empty compile cache so nothing from an earlier run is reused."""
    tmp = tmp_path_factory.mktemp("docs")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "GRAPHGRAD_CACHE": str(tmp / "cache")}
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp / "site")],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr
    return tmp / "site"


def test_docs_build_strictly_with_computed_formulas(site):
    backprop = (site / "topics" / "backprop.html").read_text()
    assert "σ′ ≤ ¼" in backprop  # gg.explain's output, computed at build time


def sections(page: str) -> dict:
    """The HTML between each h2 and the next, by the h2's text."""
    parts = re.split(r"<h2[^>]*>", page)[1:]
    return {re.sub(r"<[^>]+>", "", p.split("</h2>")[0]).strip(): p for p in parts}


@pytest.mark.parametrize("topic", sorted(CLAIMS))
def test_every_claim_is_shown_by_something_computed(site, topic):
    page = sections((site / "topics" / f"{topic}.html").read_text())
    for claim in CLAIMS[topic].split():
        found = [body for title, body in page.items() if title.startswith(f"{claim} ")]
        assert found, f"{topic}: no section for claim {claim}"
        figures = re.findall(r'<figure class="computed" data-kind="(\w+)".*?</figure>', found[0], re.S)
        assert figures, f"{topic}: claim {claim} shows nothing computed"
        for body in re.findall(r'<figure class="computed".*?</figure>', found[0], re.S):
            assert 'class="provenance"' in body and "while these docs were built" in body
            assert re.search(r'<img[^>]+src="[^"]+\.svg"|<table>|<pre>', body), "an empty figure"


def test_computed_figures_exist(site):
    for page in (site / "topics").glob("*.html"):
        for src in re.findall(r'<img[^>]+src="([^"]+)"', page.read_text()):
            assert (page.parent / src).resolve().is_file(), f"{page.name}: missing {src}"


class Remote(html.parser.HTMLParser):
    """Collects src/href of script, link, img, source, iframe and embed tags that point off the machine."""

    TAGS = {"script": "src", "link": "href", "img": "src", "source": "src", "iframe": "src", "embed": "src"}

    def __init__(self):
        super().__init__()
        self.remote = []

    def handle_starttag(self, tag, attrs):
        url = dict(attrs).get(self.TAGS.get(tag, ""), "") or ""
        if re.match(r"(https?:)?//", url):
            self.remote.append(f"<{tag}> {url}")


def test_pages_load_nothing_remote(site):
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 12
    for page in pages:
        parser = Remote()
        parser.feed(page.read_text())
        assert parser.remote == [], page
    for css in site.rglob("*.css"):
        assert not re.search(r"url\(\s*['\"]?(https?:)?//", css.read_text()), css  # no web fonts
    assert (site / "search" / "search_index.js").exists()  # the offline plugin: search works from file://


def test_no_raw_latex_on_any_page(site):
    for page in site.rglob("*.html"):
        text = re.sub(r"<(pre|code|script|style)[^>]*>.*?</\1>", "", page.read_text(), flags=re.S)
        assert not re.search(r"\$\$|\\\(|\\\[|\\(frac|partial|sigma|sum|prod|left|mathrm)\b", text), page


def test_every_topic_page_links_its_example_and_the_notebook(site):
    for topic in CLAIMS:
        page = (site / "topics" / f"{topic}.html").read_text()
        links = re.findall(r'href="\.\./(examples/[\w.]+)"', page)
        assert "examples/tour.ipynb" in links and any(link.endswith(".py") for link in links), topic
        assert all((site / link).is_file() for link in links), topic


def test_api_reference_shows_signatures_and_docstrings(site):
    api = (site / "api.html").read_text()
    for name in ("Graph", "Tensor", "compile", "Compiled", "check_grad", "fit", "save_params", "load_params",
                 "render", "explain", "summary", "Dense", "LSTM", "Adam", "softmax_cross_entropy", "grad"):
        assert re.search(rf'id="graphgrad\.[\w.]*\b{name}"', api), name
    assert "usage: graphgrad" in api and "graphgrad render" in api  # the CLI's help, printed at build time
    documented = lambda name: f"gg.{name}(" in api or re.search(rf'id="graphgrad\.[\w.]*\b{name}"', api)  # noqa: E731
    assert [name for name in gg.__all__ if not documented(name)] == []

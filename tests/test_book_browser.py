"""The built book, opened in headless Chromium: pages render, images and links resolve, no error output.

Needs a ``chromium`` binary (CI installs Debian's). The book is built into a temporary folder with
warnings as errors. Offline, MathJax cannot come from its CDN; when ``MATHJAX_DIR`` points at a local
copy of MathJax 3's ``es5`` folder (CI installs one with npm), the pages under test load that copy
instead and the math is checked as rendered. ``BOOK_SCREENSHOT_DIR`` keeps the screenshots.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import colab_cell  # noqa: E402

CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None
)
MATHJAX_CDN = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"
# CI sets REQUIRE_BROWSER=1 so that a missing browser or MathJax fails instead of skipping.
REQUIRED = os.environ.get("REQUIRE_BROWSER") == "1"
if CHROMIUM is None and REQUIRED:
    raise RuntimeError("REQUIRE_BROWSER=1 but no chromium binary: apt-get install chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium: apt-get install chromium")


def _toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [str(path.relative_to(ROOT).with_suffix("")) for path in colab_cell.chapters()]


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.classes: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if attrs.get("class"):
            self.classes.append(attrs["class"])
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])


def _parse(path: Path) -> _PageParser:
    parser = _PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def _is_external(url: str) -> bool:
    return urlsplit(url).scheme in {"http", "https", "mailto", "data", "javascript"}


@pytest.fixture(scope="module")
def html_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("book")
    jb = Path(sys.executable).with_name("jupyter-book")
    build = subprocess.run(
        [str(jb), "build", str(ROOT), "--path-output", str(out), "-W", "-n", "--keep-going"],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    html = out / "_build" / "html"
    mathjax = os.environ.get("MATHJAX_DIR")
    if mathjax and (Path(mathjax) / "tex-mml-chtml.js").exists():
        shutil.copytree(mathjax, html / "_mathjax")
        for page in html.rglob("*.html"):
            local = os.path.relpath(html / "_mathjax" / "tex-mml-chtml.js", page.parent)
            page.write_text(page.read_text(encoding="utf-8").replace(MATHJAX_CDN, local), encoding="utf-8")
    return html


def _chromium(*args: str) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--virtual-time-budget=8000", *args]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def rendered(html_dir) -> dict[str, tuple[str, Path]]:
    """Each page of the table of contents: (DOM after scripts ran, screenshot path)."""
    shots = Path(os.environ.get("BOOK_SCREENSHOT_DIR", html_dir.parent / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    result = {}
    for page in _toc_pages():
        url = (html_dir / f"{page}.html").as_uri()
        shot = shots / f"{Path(page).name}.png"
        _chromium("--window-size=1280,1000", f"--screenshot={shot}", url)
        dom = _chromium("--dump-dom", url).stdout
        result[page] = (dom, shot)
    return result


@pytest.mark.parametrize("page", _toc_pages())
def test_page_renders_a_non_blank_screenshot(rendered, page):
    import imageio.v3 as iio

    dom, shot = rendered[page]
    assert "<article" in dom, f"{page}: no article element in the rendered DOM"
    pixels = iio.imread(shot).astype(np.float32)
    assert pixels.shape[0] >= 900 and pixels.shape[1] >= 1200
    ink = (pixels[..., :3].mean(-1) < 200).mean()
    assert ink > 0.01, f"{page}: screenshot is almost blank ({ink:.2%} dark pixels)"


@pytest.mark.parametrize("page", _toc_pages())
def test_every_image_resolves(html_dir, page):
    path = html_dir / f"{page}.html"
    for src in _parse(path).images:
        if _is_external(src):
            continue
        target = (path.parent / unquote(urlsplit(src).path)).resolve()
        assert target.is_file(), f"{page}: <img src={src!r}> points at a missing file"


@pytest.mark.parametrize("page", _toc_pages())
def test_no_internal_link_is_broken(html_dir, page):
    path = html_dir / f"{page}.html"
    for href in _parse(path).links:
        if _is_external(href):
            continue
        parts = urlsplit(href)
        target = path if not parts.path else (path.parent / unquote(parts.path)).resolve()
        if target.is_dir():
            target = target / "index.html"
        assert target.exists(), f"{page}: link {href!r} points at a missing file"
        if parts.fragment and target.suffix == ".html":
            assert parts.fragment in _parse(target).ids, f"{page}: link {href!r} has no target anchor"


@pytest.mark.parametrize("page", _toc_pages())
def test_no_error_or_stderr_output(html_dir, page):
    parser = _parse(html_dir / f"{page}.html")
    bad = [c for c in parser.classes if re.search(r"\boutput (stderr|traceback|error)\b", c)]
    assert not bad, f"{page}: error or stderr output blocks: {bad}"
    assert "Traceback (most recent call last)" not in (html_dir / f"{page}.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("page", _toc_pages())
def test_math_is_rendered(rendered, html_dir, page):
    if not (html_dir / "_mathjax").exists():
        assert not REQUIRED, "REQUIRE_BROWSER=1 but MATHJAX_DIR does not hold MathJax 3's es5 folder"
        pytest.skip("MATHJAX_DIR not set: the offline browser cannot load MathJax from its CDN")
    source = (html_dir / f"{page}.html").read_text(encoding="utf-8")
    dom, _ = rendered[page]
    if "\\[" in source or "\\(" in source:
        assert "<mjx-container" in dom, f"{page}: math present but not typeset by MathJax"
        assert "<mjx-merror" not in dom, f"{page}: MathJax reported an error"


@pytest.mark.parametrize(("number", "path"), colab_cell.numbered_pages(), ids=lambda v: getattr(v, "stem", v))
def test_page_title_carries_the_number_its_figures_use(html_dir, number, path):
    # Figure captions say "Figure 7.2": the built book must number chapter 7 as 7, across parts.
    page = html_dir / path.relative_to(ROOT).with_suffix(".html")
    headings = re.findall(r"<h1>(.*?)</h1>", page.read_text(encoding="utf-8"), re.DOTALL)
    title = next((h for h in headings if "headerlink" in h), None)  # the article's, not the page header's
    assert title, f"{page.name}: no title"
    shown = re.search(r'class="section-number">([^<]*)</span>', title)
    if number.isdigit():
        assert shown and shown.group(1).strip() == f"{number}.", f"{page.name}: title {title[:80]!r}"
    else:
        assert shown is None and f"Appendix {number}." in title, f"{page.name}: {title[:80]!r}"

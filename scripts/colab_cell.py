"""The first code cell of every chapter: installs the companion package in Colab, nowhere else.

    python scripts/colab_cell.py            # print the cell
    python scripts/colab_cell.py --write [book/TOPIC.ipynb ...]   # put it at the top of chapters

The install source is pinned to the release tag ``v<version>`` of the repository named in
``_config.yml``, so a chapter opened from the book runs with the package it was written for.
The package depends on no framework, so Colab's own TensorFlow and PyTorch are never touched.
``COMPANION_INSTALL_SOURCE`` overrides the source (the tests point it at a local checkout).
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
MARKER = "# Colab only: install the course's companion package"


def cell_source() -> str:
    """The canonical setup cell, built from the repository URL and the package version."""
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return f"""{MARKER}, pinned to this book's release.
# Colab's own TensorFlow and PyTorch stay as they are; elsewhere this cell does nothing.
import importlib
import os
import subprocess
import sys

COMPANION_SOURCE = "git+{url}@v{version}"
if "google.colab" in sys.modules or os.environ.get("COMPANION_INSTALL_SOURCE"):
    source = os.environ.get("COMPANION_INSTALL_SOURCE", COMPANION_SOURCE)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", source], check=True)
    importlib.invalidate_caches()"""


def numbered_pages() -> list[tuple[str, Path]]:
    """Every notebook of the book with its number, in `_toc.yml` order: chapters count 1, 2, ...
    across parts; the part captioned "Appendices" counts A, B, ..."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    parts = toc.get("parts", [{"caption": "", "chapters": toc.get("chapters", [])}])
    pages, chapter, appendix = [], 0, 0
    for part in parts:
        for entry in part["chapters"]:
            path = ROOT / f"{entry['file']}.ipynb"
            if part.get("caption", "").startswith("Appendices"):
                label, appendix = "ABCDEFGH"[appendix], appendix + 1
            else:
                chapter += 1
                label = str(chapter)
            pages.append((label, path))
    return pages


def chapters() -> list[Path]:
    """The notebooks of the book (chapters and appendices) in `_toc.yml` order."""
    return [path for _, path in numbered_pages()]


def write(path: Path) -> bool:
    """Insert or refresh the setup cell as the first code cell; True if the file changed."""
    nb = nbformat.read(path, as_version=4)
    first = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    if nb.cells[first].source.startswith(MARKER):
        if nb.cells[first].source == cell_source():
            return False
        nb.cells[first].source = cell_source()
    else:
        nb.cells.insert(first, nbformat.v4.new_code_cell(cell_source()))
    nbformat.write(nb, path)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--write", action="store_true", help="update the chapters (default: all in _toc.yml)")
    parser.add_argument("notebooks", nargs="*", type=Path, help="chapters to update instead of all")
    args = parser.parse_args()
    if not args.write:
        print(cell_source())
        return
    for path in [p.resolve() for p in args.notebooks] or chapters():
        print(f"{path.relative_to(ROOT)}: {'updated' if write(path) else 'already current'}")


if __name__ == "__main__":
    main()

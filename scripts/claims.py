"""Numbers in a chapter's prose, bound to the outputs the chapter printed.

A number quoted in a markdown cell is wrapped in a span that names the printed line it comes from:

    The real-digit floor is <span data-claim="FD floor">0.73</span>.

The key ("FD floor") must occur in exactly one line of the notebook's text outputs (or, when it
occurs in several, begin exactly one of them), and the quoted text ("0.73") must occur in that line. Spans are invisible in the built book, in Jupyter and in
Colab, so readers only see the number. `scripts/execute_notebooks.py` runs this check after every
full-mode execution and refuses to write a notebook whose prose disagrees with its outputs; the
tests run it on the stored notebooks, so an edited number fails CI.

    python scripts/claims.py book/*.ipynb     # check stored notebooks; exit 1 on a mismatch
"""

from __future__ import annotations

import html
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

CLAIM = re.compile(r'<span data-claim="([^"]+)">(.*?)</span>', re.DOTALL)
OPENING = re.compile(r"<span data-claim=")


@dataclass(frozen=True)
class Claim:
    cell: int
    key: str
    quoted: str


def claims(nb: nbformat.NotebookNode) -> list[Claim]:
    """Every claim span in the notebook's markdown cells, in order."""
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            for key, quoted in CLAIM.findall(cell.source):
                found.append(Claim(index, html.unescape(key), quoted.strip()))
    return found


def output_lines(nb: nbformat.NotebookNode) -> list[str]:
    """Every line of text the code cells printed or displayed as plain text."""
    lines: list[str] = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stdout":
                lines.extend(output.get("text", "").splitlines())
            elif output.get("output_type") in ("execute_result", "display_data"):
                lines.extend(output.get("data", {}).get("text/plain", "").splitlines())
    return lines


def problems(nb: nbformat.NotebookNode) -> list[str]:
    """What is wrong with the notebook's claims; empty when every quoted number matches its output."""
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and len(OPENING.findall(cell.source)) != len(
            CLAIM.findall(cell.source)
        ):
            found.append(f"cell {index}: a claim span is not closed or not written as {CLAIM.pattern}")
    lines = output_lines(nb)
    for claim in claims(nb):
        matching = [line for line in lines if claim.key in line]
        starting = [line for line in matching if line.lstrip().startswith(claim.key)]
        if len(matching) > 1 and len(starting) == 1:
            matching = starting  # "PyTorch, last epoch" labels its own line, not "posts' recipe, PyTorch, last epoch"
        where = f"cell {claim.cell}: {claim.quoted!r} (key {claim.key!r})"
        if not matching:
            found.append(f"{where}: no output line contains the key")
        elif len(matching) > 1:
            found.append(
                f"{where}: the key is in {len(matching)} output lines and begins none or several; make it unique"
            )
        elif claim.quoted not in matching[0]:
            found.append(f"{where}: the output says {matching[0].strip()!r}")
    return found


def main(paths: list[str]) -> int:
    failed = False
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        found = problems(nb)
        print(f"{path}: {len(claims(nb))} claims, {len(found)} problems")
        for problem in found:
            print(f"  {problem}")
        failed = failed or bool(found)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or [str(p) for p in sorted(Path("book").glob("*.ipynb"))]))

"""The chapters' text against their stored outputs: quoted numbers, figure captions, exercises, and
markdown that renders the same in the book, in Jupyter and in Colab (CONTRIBUTING.md, "Chapter notebooks")."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import claims  # noqa: E402
import colab_cell  # noqa: E402

CHAPTERS = colab_cell.chapters()
NUMBERED = colab_cell.numbered_pages()


def read(path):
    return nbformat.read(path, as_version=4)


def notebook(*cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    return nb


def printed(text):
    cell = nbformat.v4.new_code_cell("print(...)")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
    return cell


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_quoted_numbers_match_the_outputs(path):
    nb = read(path)
    assert claims.claims(nb), "quote the chapter's measured numbers as claims (CONTRIBUTING.md)"
    assert claims.problems(nb) == []


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_claim_fails_when_its_number_is_edited(path):
    nb = read(path)
    for claim in claims.claims(nb):
        digit = re.search(r"\d", claim.quoted)
        assert digit, f"cell {claim.cell}: claim {claim.quoted!r} quotes no number"
        wrong = str((int(digit.group()) + 1) % 10)
        edited = claim.quoted[: digit.start()] + wrong + claim.quoted[digit.end() :]
        cell = nb.cells[claim.cell]
        original = cell.source
        cell.source = original.replace(f">{claim.quoted}</span>", f">{edited}</span>", 1)
        assert claims.problems(nb), (
            f"cell {claim.cell}: editing {claim.quoted!r} to {edited!r} went unnoticed"
        )
        cell.source = original


def test_claim_check_reports_each_kind_of_problem():
    table = printed("FD floor: 0.73\nFD of the GAN: 6.12\n")
    quote = nbformat.v4.new_markdown_cell
    assert claims.problems(notebook(table, quote('<span data-claim="FD floor">0.73</span>'))) == []
    assert (
        "output says" in claims.problems(notebook(table, quote('<span data-claim="FD floor">0.74</span>')))[0]
    )
    assert (
        "no output line"
        in claims.problems(notebook(table, quote('<span data-claim="FD ceil">0.73</span>')))[0]
    )
    assert "2 output lines" in claims.problems(notebook(table, quote('<span data-claim="FD">0.73</span>')))[0]
    labelled = printed("PyTorch, last epoch: 0.76\nposts' recipe, PyTorch, last epoch: 0.83\n")
    assert (
        claims.problems(notebook(labelled, quote('<span data-claim="PyTorch, last epoch">0.76</span>'))) == []
    )
    assert "not closed" in claims.problems(notebook(table, quote('<span data-claim="FD floor">0.73')))[0]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_markdown_renders_the_same_in_colab(path):
    # Colab shows MyST roles and directives as raw text.
    for index, cell in enumerate(read(path).cells):
        if cell.cell_type == "markdown":
            assert not re.search(r"^(:::|```\{)|\{[a-z-]+\}`", cell.source, re.MULTILINE), f"cell {index}"


@pytest.mark.parametrize(
    ("number", "path"), NUMBERED, ids=lambda v: v.stem if isinstance(v, Path) else str(v)
)
def test_every_figure_has_a_numbered_caption(number, path):
    cells = read(path).cells
    expected = 1
    for index, cell in enumerate(cells):
        draws = cell.cell_type == "code" and any("image/png" in o.get("data", {}) for o in cell.outputs)
        shows = cell.cell_type == "markdown" and re.match(r"!\[", cell.source)
        if cell.cell_type == "code" and cell.source.startswith("# @title Solution"):
            continue  # a solution's figure is explained in its solution text
        if draws or shows:
            caption = cells[index + 1].source if draws and index + 1 < len(cells) else cell.source
            if shows:
                caption = cell.source.split("\n\n", 1)[1] if "\n\n" in cell.source else ""
            assert caption.startswith(f"*Figure {number}.{expected}. "), (
                f"cell {index}: caption {caption[:60]!r}"
            )
            expected += 1
    assert expected > 1 or not number.isdigit(), "a chapter without figures?"


@pytest.mark.parametrize(
    ("number", "path"), NUMBERED, ids=lambda v: v.stem if isinstance(v, Path) else str(v)
)
def test_three_to_five_exercises_each_with_a_solution(number, path):
    cells = read(path).cells
    headings = [
        i for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source.startswith("### Exercise")
    ]
    assert 3 <= len(headings) <= 5, f"{len(headings)} exercises"
    for n, index in enumerate(headings, start=1):
        assert cells[index].source.startswith(f"### Exercise {number}.{n}: ")
        solution = cells[index + 1]
        assert solution.cell_type == "markdown"
        assert solution.source.startswith(f"<details><summary>Solution {number}.{n}</summary>\n\n")
        assert solution.source.rstrip().endswith("\n\n</details>")
        for cell in cells[index + 2 :]:
            if cell.cell_type != "code":
                break
            assert cell.source.startswith(f"# @title Solution {number}.{n}"), "one code cell per solution"
            assert "hide-input" in cell.metadata.get("tags", [])
            assert cell.metadata.get("cellView") == "form"

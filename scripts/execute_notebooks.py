"""Execute chapters top to bottom in a fresh kernel and store their outputs (full mode by default).

    python scripts/execute_notebooks.py book/generative_modelling.ipynb [...]
    python scripts/execute_notebooks.py --quick book/*.ipynb   # a fast dry run, not for committing

The committed outputs of every chapter come from this script in full mode. It refuses
to write a notebook that ends with an error output or a stderr block, or (in full mode) whose
prose quotes a number its outputs do not print (see scripts/claims.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
import claims


def execute(path: Path, quick: bool, timeout: int) -> float:
    """Run one notebook in its own folder; return seconds taken."""
    nb = nbformat.read(path, as_version=4)
    os.environ["COMPANION_PROGRESS"] = "0"
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    if quick:
        os.environ["COMPANION_QUICK"] = "1"
    else:
        os.environ.pop("COMPANION_QUICK", None)
    start = time.perf_counter()
    NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    seconds = time.perf_counter() - start
    problems = []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                problems.append(f"cell {index}: error {output.get('ename')}")
            if output.get("name") == "stderr":
                problems.append(f"cell {index}: stderr {output.get('text', '')[:200]!r}")
    if not quick:
        problems += claims.problems(nb)
    if problems:
        # Keep the executed copy: when only prose disagrees, fix the markdown there and copy it back.
        rejected = Path(__file__).resolve().parents[1] / "_build" / "rejected" / path.name
        rejected.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, rejected)
        raise SystemExit(
            f"{path}: not written (executed copy kept in {rejected}), fix these first:\n  "
            + "\n  ".join(problems)
        )
    nbformat.write(nb, path)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--quick", action="store_true", help="quick mode (for a dry run only)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds allowed per cell")
    args = parser.parse_args()
    for path in args.notebooks:
        seconds = execute(path, args.quick, args.timeout)
        print(
            f"{path}: executed in {seconds:.0f} s ({'quick' if args.quick else 'full'} mode)", file=sys.stdout
        )


if __name__ == "__main__":
    main()

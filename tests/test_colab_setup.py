"""The Colab setup cell: present and identical in every chapter, and it really installs the package.

The install test imitates a fresh Colab runtime: a new virtual environment that sees this
environment's frameworks and libraries (as Colab has its own) but not the companion package. The
chapter's setup cell installs the package from this checkout, then the chapter runs in quick mode.
The frameworks must come out of it unchanged: same versions, nothing installed over them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import colab_cell  # noqa: E402

CHAPTERS = colab_cell.chapters()


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_first_code_cell_is_the_setup_cell(path):
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert first.source == colab_cell.cell_source(), f"run: python scripts/colab_cell.py --write {path.name}"


def test_setup_cell_is_pinned_to_the_release_tag():
    source = colab_cell.cell_source()
    assert "@v0." in source or "@v1." in source
    assert (
        "tensorflow" not in source.lower().split("import sys")[1]
        and "torch" not in source.split("import sys")[1]
    )


def _versions(python: Path) -> dict[str, str]:
    code = "import json, importlib.metadata as m; print(json.dumps({d: m.version(d) for d in ('torch', 'keras', 'numpy')}))"
    return json.loads(
        subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout
    )


def test_setup_cell_installs_the_package_in_a_fresh_colab_like_environment(tmp_path):
    venv = tmp_path / "colab"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())  # fmt: skip
    # Colab's preinstalled stack: this environment's packages, without the editable companion install.
    (site / "preinstalled.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    missing = subprocess.run(
        [str(python), "-c", "import companion"], capture_output=True, text=True, cwd=tmp_path
    )
    assert missing.returncode != 0, "the fresh environment must not see the companion package yet"
    before = _versions(python)

    chapter = CHAPTERS[0]
    env = {
        **os.environ,
        "COMPANION_INSTALL_SOURCE": str(ROOT),
        "COMPANION_QUICK": "1",
        "COMPANION_PROGRESS": "0",
    }
    env.pop("PYTHONPATH", None)
    run = subprocess.run(
        [
            str(python),
            "-m",
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "--output-dir",
            str(tmp_path),
            "--ExecutePreprocessor.timeout=600",
            str(chapter),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=chapter.parent,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    executed = nbformat.read(tmp_path / chapter.name, as_version=4)
    errors = [o for c in executed.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors

    assert subprocess.run([str(python), "-c", "import companion"], cwd=tmp_path).returncode == 0
    assert _versions(python) == before, "the setup cell changed a preinstalled framework or numpy"
    installed = {p.name.split("-")[0].lower() for p in site.iterdir()}
    assert not installed & {"torch", "tensorflow", "keras", "numpy"}, installed

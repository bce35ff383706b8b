"""Every notebook in experiments/ runs top to bottom in a python3 kernel, so a broken notebook fails CI.

The kernel starts in the repository root with `SELAX_NOTEBOOK_SMOKE=1` (the notebooks' CPU switch to
`:smoke` configs) and inherits conftest's environment: 8 simulated CPU devices, the shared compilation
cache and the session's private `TFDS_DATA_DIR`.
"""

import json
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "experiments").glob("*.ipynb"))
CELL_TIMEOUT_S = 300


def _notebook_runner():
    """(nbclient, nbformat); fails (not skips) naming the missing package, as CI installs the test extra."""
    try:
        import ipykernel  # noqa: F401  (provides the python3 kernel)
        import nbclient
        import nbformat
    except ImportError as error:
        pytest.fail(
            f"Running the notebooks needs nbclient, nbformat and ipykernel: {error}. Install the test extra:"
            ' pip install -e ".[test]"',
            pytrace=False,
        )
    return nbclient, nbformat


def test_experiments_hold_notebooks():
    assert NOTEBOOKS, f"no notebook found in {REPO / 'experiments'}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    code_cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    dirty = [i for i, c in enumerate(code_cells) if c.get("outputs") or c.get("execution_count") is not None]
    assert not dirty, f"{path.name}: code cells {dirty} hold outputs; clear them before committing."


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path, tfds_data_dir, monkeypatch):
    del tfds_data_dir  # The fixture has set TFDS_DATA_DIR in the environment the kernel inherits.
    nbclient, nbformat = _notebook_runner()
    monkeypatch.setenv("SELAX_NOTEBOOK_SMOKE", "1")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(REPO)}},
    )
    client.execute()  # Raises CellExecutionError, with the cell's traceback, on the first failing cell.

    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert not [o for c in code_cells for o in c.outputs if o.output_type == "error"]
    blank = [
        i
        for i, c in enumerate(code_cells)
        if "plt.show()" in c.source and not any("image/png" in o.get("data", {}) for o in c.outputs)
    ]
    assert not blank, f"{path.name}: code cells {blank} call plt.show() but displayed no figure"

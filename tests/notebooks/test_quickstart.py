"""notebooks/quickstart.ipynb executes top to bottom (nbclient) and is stored without outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "quickstart.ipynb"
EPOCHS = 2


def test_notebook_is_stored_without_outputs() -> None:
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, (
            "strip the outputs before committing"
        )


def test_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("matplotlib")
    pytest.importorskip("lightning")
    monkeypatch.setenv("QUICKSTART_EPOCHS", str(EPOCHS))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=240,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()

    output = tmp_path / "quickstart_output"
    assert (output / "emissions.csv").is_file() and (output / "emissions_windows.csv").is_file()
    png = (output / "quickstart.png").read_bytes()
    assert png[:4] == b"\x89PNG" and len(png) > 5000
    # the per-epoch table has one row per epoch, and the figure is shown inline
    texts = [
        o.get("data", {}).get("text/plain", "") + o.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.outputs
    ]
    assert any("the epochs hold" in t for t in texts)
    images = [
        o
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.outputs
        if "image/png" in o.get("data", {})
    ]
    assert len(images) == 1

    from codecarbon_callbacks import read_emissions

    windows = read_emissions(output / "emissions_windows.csv")
    assert sorted(set(windows[windows["kind"] == "epoch"]["epoch"].astype(int))) == list(
        range(EPOCHS)
    )

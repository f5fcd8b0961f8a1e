"""codecarbon_callbacks.reports, the library behind ``codecarbon-callbacks report``, called
directly on reports the real tracker wrote (constant powers: exact expected figures)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from cli.conftest import CPU_W, GPU_W, RAM_W, write_run
from codecarbon_callbacks_core.errors import CodeCarbonCallbacksError

from codecarbon_callbacks.reports import (
    J_PER_KWH,
    ReportError,
    epoch_summary,
    format_table,
    last_run_id,
    load_reports,
    plot_epochs,
    run_summary,
    select_run,
    task_summary,
)

TOTAL_W = CPU_W + GPU_W + RAM_W


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    output = tmp_path_factory.mktemp("reports")
    first = write_run(output, epochs=3, flush=True)
    second = write_run(output, epochs=2, task=True)
    return output, [first, second]


def test_load_reports_sorts_files_by_header(two_runs: tuple[Path, list[str]]) -> None:
    output, run_ids = two_runs
    (output / "other.csv").write_text("a,b\n1,2\n")  # not a report: skipped
    reports = load_reports([output])
    assert [Path(f).name for f in reports.run_files] == ["emissions.csv"]
    assert [Path(f).name for f in reports.window_files] == ["emissions_windows.csv"]
    assert reports.runs is not None and reports.windows is not None
    assert len(reports.runs) == 3  # a flush row and two final rows
    assert set(reports.runs["run_id"]) == set(run_ids)
    assert set(reports.windows["source_file"]) == {str(output / "emissions_windows.csv")}
    assert last_run_id(reports) == run_ids[1]


def test_load_reports_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="nowhere: no such file or folder"):
        load_reports([tmp_path / "nowhere"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReportError, match="no emissions.csv or emissions_windows.csv"):
        load_reports([empty])
    broken = tmp_path / "emissions.csv"
    broken.write_text("run_id,energy_consumed,timestamp\nr1,not-a-number,not-a-time\n")
    with pytest.raises(ReportError, match="cannot be read as an emissions CSV") as caught:
        load_reports([broken])
    assert str(broken) in str(caught.value)
    assert issubclass(ReportError, CodeCarbonCallbacksError)


def test_run_and_epoch_summaries_add_up(two_runs: tuple[Path, list[str]]) -> None:
    output, run_ids = two_runs
    reports = load_reports([output])
    runs = run_summary(reports.runs)
    assert list(runs["run_id"]) == run_ids  # one row per run, in end order
    assert set(runs["methods"]) == {"cpu=constant gpu=constant ram=constant"}
    final = reports.runs[reports.runs["status"] == "completed"].set_index("run_id")
    for _, run in runs.iterrows():
        assert run["energy_kwh"] == pytest.approx(final.loc[run["run_id"], "energy_consumed"])
        assert run["energy_kwh"] * J_PER_KWH / run["duration_s"] == pytest.approx(TOTAL_W, rel=0.02)

    epochs = epoch_summary(select_run(reports.windows, run_ids[0][:8]))
    assert list(epochs["epoch"]) == [0, 1, 2] and set(epochs["run_id"]) == {run_ids[0]}
    for _, epoch in epochs.iterrows():
        assert epoch["mean_power_w"] == pytest.approx(TOTAL_W, rel=0.02)
        assert epoch["gpu_energy_kwh"] / epoch["energy_kwh"] == pytest.approx(
            GPU_W / TOTAL_W, rel=1e-3
        )
        assert epoch["train_energy_kwh"] + epoch["validation_energy_kwh"] == pytest.approx(
            epoch["energy_kwh"]
        )
        assert epoch["status"] == "completed"
    tasks = task_summary(reports.windows)
    assert list(tasks["task"]) == ["evaluate"] and list(tasks["run_id"]) == [run_ids[1]]


def test_empty_inputs_give_empty_frames() -> None:
    assert run_summary(None).empty and task_summary(None).empty
    epochs = epoch_summary(None)
    assert epochs.empty and "mean_power_w" in epochs.columns
    assert select_run(None, "abc") is None


def test_format_table_in_wh_and_g(two_runs: tuple[Path, list[str]]) -> None:
    output, run_ids = two_runs
    reports = load_reports([output])
    epochs = epoch_summary(reports.windows)
    table = format_table(epochs, "epochs").splitlines()
    header = table[0].split()
    assert header[:4] == ["run", "epoch", "duration_s", "energy_Wh"]
    assert set(table[1]) == {"-", " "} and len(table) == 2 + len(epochs)
    first = table[2].split()
    assert first[0] == run_ids[0][:8]
    energy_wh = float(first[header.index("energy_Wh")])
    assert math.isclose(energy_wh, epochs["energy_kwh"].iloc[0] * 1000, rel_tol=1e-3)
    with pytest.raises(ValueError, match="kind must be one of runs, epochs, tasks"):
        format_table(epochs, "weeks")


def test_plot_epochs(two_runs: tuple[Path, list[str]], tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="nothing to plot"):
        plot_epochs(epoch_summary(None), tmp_path / "none.png")
    pytest.importorskip("matplotlib")
    output, _ = two_runs
    path = tmp_path / "epochs.png"
    assert plot_epochs(epoch_summary(load_reports([output]).windows), path) == str(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ReportError, match="cannot be written"):
        plot_epochs(epoch_summary(load_reports([output]).windows), tmp_path / "no" / "x.png")


def test_the_chart_reads_at_a_glance(two_runs: tuple[Path, list[str]]) -> None:
    """Units scaled to the figures, legends outside the data, headroom, emissions on their own
    axis, plain legend entries, project and run in the titles: asserted on the figure."""
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from codecarbon_callbacks.report_plots import energy_unit, epoch_figure, mass_unit
    from codecarbon_callbacks.reports import project_names

    output, run_ids = two_runs
    reports = load_reports([output])
    epochs = epoch_summary(reports.windows)
    assert project_names(reports) == {run_ids[0]: "cli-test", run_ids[1]: "cli-test"}
    fig = epoch_figure(epochs, projects=project_names(reports))
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        axes = fig.axes
        assert len(axes) == 4  # two runs, an energy and an emissions panel each
        # the runs' epochs last tens of ms at 355 W: a few mWh, far below a g
        peak_kwh, peak_kg = epochs["energy_kwh"].max(), epochs["emissions_kg"].max()
        e_unit, e_factor = energy_unit(epochs["energy_kwh"])
        m_unit, m_factor = mass_unit(epochs["emissions_kg"])
        assert e_unit == "mWh" and m_unit in ("mg", "µg")
        assert 1 <= peak_kwh * e_factor < 1000 and 1 <= peak_kg * m_factor < 1000
        for run_index, run_id in enumerate(run_ids):
            energy_ax, emissions_ax = axes[2 * run_index], axes[2 * run_index + 1]
            assert energy_ax.get_ylabel() == "energy (mWh)"
            assert emissions_ax.get_ylabel() == f"emissions ({m_unit} CO2eq)"
            assert emissions_ax.get_xlabel() == "epoch"
            title = energy_ax.get_title()
            assert "cli-test" in title and run_id[:8] in title
            # no offset such as 1e-5 on either axis
            assert energy_ax.yaxis.get_offset_text().get_text() == ""
            assert emissions_ax.yaxis.get_offset_text().get_text() == ""
            # plain words in the legend, and the legend right of the data, inside the figure
            legend = energy_ax.get_legend()
            assert [t.get_text() for t in legend.get_texts()] == ["CPU", "GPU", "RAM"]
            box, data = legend.get_window_extent(renderer), energy_ax.get_window_extent(renderer)
            assert box.x0 >= data.x1 and box.x1 <= fig.bbox.x1
            # headroom above the highest bar and the highest point
            rows = epochs[epochs["run_id"] == run_id]
            top = rows["energy_kwh"].max() * e_factor
            assert energy_ax.get_ylim()[1] >= 1.1 * top
            assert energy_ax.get_ylim()[1] < 1.5 * top
            [line] = emissions_ax.get_lines()
            assert list(line.get_ydata()) == pytest.approx(list(rows["emissions_kg"] * m_factor))
            assert emissions_ax.get_ylim()[1] >= 1.1 * max(line.get_ydata())
            # the emissions are drawn on their own axes, not over the energy bars
            assert line.axes is emissions_ax and not energy_ax.get_lines()
            assert emissions_ax.bbox.y1 <= energy_ax.bbox.y0
        assert fig.get_suptitle() == "cli-test"
    finally:
        plt.close(fig)


def test_units_follow_the_figures_and_component_names_read_plainly() -> None:
    from codecarbon_callbacks.report_plots import component_label, energy_unit, mass_unit

    assert energy_unit([2.0, 3.0]) == ("kWh", 1.0)
    assert energy_unit([0.002, 0.004]) == ("Wh", 1000.0)
    assert energy_unit([3e-6]) == ("mWh", 1e6)
    assert energy_unit([]) == ("Wh", 1000.0)
    assert mass_unit([4e-6, 1e-7]) == ("mg", 1e6)
    assert mass_unit([0.5]) == ("g", 1000.0)
    assert component_label("cpu:constant") == "CPU (fixed power)"
    assert component_label("cpu:constant", "constant") == "CPU (fixed power, estimated)"
    assert component_label("cpu:package-1", "rapl") == "CPU package 1 (measured, RAPL)"
    assert component_label("gpu:0", "nvml_energy") == "GPU 0 (measured, NVML counter)"
    assert component_label("ram:dram-0") == "RAM DRAM 0"
    assert component_label("ram") == "RAM"


def test_the_cli_names_still_reach_the_library() -> None:
    """The helpers lived in codecarbon_callbacks.cli: the old names still work, and say where
    they moved."""
    import codecarbon_callbacks.cli as cli
    from codecarbon_callbacks import reports

    for name in (
        "load_reports",
        "run_summary",
        "epoch_summary",
        "task_summary",
        "format_table",
        "plot_epochs",
        "Reports",
    ):
        with pytest.warns(DeprecationWarning, match=f"codecarbon_callbacks.reports.{name}"):
            assert getattr(cli, name) is getattr(reports, name)
    with pytest.raises(AttributeError):
        cli.no_such_name  # noqa: B018

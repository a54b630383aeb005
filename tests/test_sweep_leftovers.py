"""What a sweep leaves in its folder: sweep.png when matplotlib is missing (a warning, as `delgrad
train` gives, and an earlier figure removed with a note), and
the temporary files of atomic writes killed mid-write (removed from the sweep's folder and from
finished trial folders nobody works in)."""

import json
import sys
import warnings

import pytest

from delgrad_core.cli import main
from delgrad_core.testing import cli_runner
from delgrad_core.training._plots import plots_available
from delgrad_core.training._run_folder import folder_lock

needs_matplotlib = pytest.mark.skipif(not plots_available(), reason="matplotlib is not installed")


def _sweep(out, hidden="4", **extra):
    args = ["sweep", "--hidden", hidden, "--delays", "none", "--seeds", "1", "--epochs", "1", "--jobs", "1",
            "--out", str(out)]
    result = cli_runner().invoke(main, args)
    assert result.exit_code == 0, result.output + result.stderr
    return result


def _without_matplotlib(monkeypatch):
    """As if matplotlib were not installed: importing it fails (`plots_available()` is False)."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert not plots_available()


def _no_plots_warning(monkeypatch, tmp_path) -> str:
    """The warning `delgrad train` gives when matplotlib is missing (from `plot_run`)."""
    from delgrad_core.training._plots import plot_run

    with monkeypatch.context() as patch:
        _without_matplotlib(patch)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert plot_run(tmp_path, [], None, [], [], []) == []
    assert len(caught) == 1
    return str(caught[0].message)


@needs_matplotlib
def test_a_sweep_without_matplotlib_warns_once_and_says_it_removes_the_earlier_figure(tmp_path, monkeypatch):
    text = _no_plots_warning(monkeypatch, tmp_path)
    out = tmp_path / "sweep"
    _sweep(out)
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"

    _without_matplotlib(monkeypatch)
    again = _sweep(out, hidden="4,6")  # (the figure shows one of the two results: it cannot be drawn anew)
    assert again.stderr.count("Warning:") == 1 and f"Warning: {text}" in again.stderr, again.stderr
    assert (f"note: removed {out / 'sweep.png'}, drawn from an earlier collection of results: it cannot be drawn "
            "anew now (matplotlib is not installed)") in again.output
    assert not (out / "sweep.png").exists()
    assert len(json.loads((out / "sweep_summary.json").read_text())) == 2


def test_a_sweep_without_results_removes_an_earlier_figure_without_a_warning(tmp_path, monkeypatch):
    from delgrad_core.training._sweep import _write_results
    from delgrad_core.training._trials import plan_trials

    trials = plan_trials({"epochs": 1}, [4], ["none"], 1, tmp_path)
    (tmp_path / "sweep.png").write_bytes(b"the figure of another grid")
    _without_matplotlib(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _write_results(trials, tmp_path)
    assert not (tmp_path / "sweep.png").exists()


STALE = (".sweep.csv.abcd1234.tmp", ".sweep_summary.json.x_y2z3w4.tmp", ".sweep.png.0a1b2c3d.tmp",
         "..write-test.k9l8m7n6.tmp")  # (folder_lock's write test: ".write-test")
NOT_TEMPORARIES = (".sweep.csv.tmp", ".notes.abcd1234.tmp", "sweep.csv.abcd1234.tmp", ".sweep.csv.ab.cd.tmp",
                   ".sweep.csv.ABCD1234.tmp", ".sweep.csv.abcd1234.tmp~", ".write-test.k9l8m7n6.tmp")


def test_a_sweep_removes_stale_temporaries_of_its_folder_and_of_finished_trials(tmp_path):
    out = tmp_path / "sweep"
    _sweep(out, hidden="4,6")
    trials = sorted((out / "runs").iterdir())
    assert len(trials) == 2
    for name in (*STALE, *NOT_TEMPORARIES):
        (out / name).write_text("left")
    (out / "runs" / "user-notes").mkdir()
    for trial in trials:
        (trial / ".metrics.json.abcd1234.tmp").write_text("half")
        (trial / ".learning_curves.png.abcd1234.tmp").write_text("half")
        (trial / ".notes.abcd1234.tmp").write_text("the user's")
    busy = trials[1]
    with folder_lock(busy):  # (another process works in it, e.g. `train --resume`: its files are left alone)
        _sweep(out, hidden="4,6")
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".") or "tmp" in p.name) == \
        sorted([".lock", *NOT_TEMPORARIES])
    assert sorted(p.name for p in trials[0].iterdir() if p.name.startswith(".")) == [".lock", ".notes.abcd1234.tmp"]
    assert sorted(p.name for p in busy.iterdir() if p.name.startswith(".")) == \
        [".learning_curves.png.abcd1234.tmp", ".lock", ".metrics.json.abcd1234.tmp", ".notes.abcd1234.tmp"]
    _sweep(out, hidden="4,6")  # (free now)
    assert sorted(p.name for p in busy.iterdir() if p.name.startswith(".")) == [".lock", ".notes.abcd1234.tmp"]


def test_the_summary_of_an_incomplete_sweep_says_which_seeds_it_lacks(tmp_path):
    """(a cell with one of two seeds read as complete in sweep_summary.json, and a cell without
    any result was missing from it)"""
    from delgrad_core.training._sweep import _write_results
    from delgrad_core.training._trials import plan_trials

    out = tmp_path / "sweep"
    _sweep(out)  # (hidden 4, seed 0)
    table = _write_results(plan_trials({"epochs": 1}, [4, 6], ["none"], 2, out), out)
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert [(cell["hidden"], cell["seeds"], cell["missing_seeds"]) for cell in summary] == [(4, 1, [1]), (6, 0, [0, 1])]
    assert summary[1]["median_test_accuracy"] is None and summary[1]["n_parameters"] is None
    assert 0 < summary[0]["median_test_accuracy"] <= 1
    rows = table.splitlines()
    assert rows[1].split()[:4] == ["none", "4", "28", "1/2"] and rows[2].split() == ["none", "6", "-", "0/2", "-", "-"]


def test_a_matplotlib_that_cannot_be_loaded_is_not_called_missing(tmp_path, monkeypatch):
    """(under a memory limit its libraries could not be mapped: the warning said it was not
    installed, and advised installing it)"""
    from delgrad_core.training import _plots

    def unloadable():
        raise ImportError("libpng16.so: failed to map segment from shared object")

    monkeypatch.setattr(_plots, "pyplot", unloadable)
    with pytest.warns(UserWarning) as told:
        assert _plots.plot_run(tmp_path, [], None, [], [], []) == []
    assert [str(warning.message) for warning in told] == [
        "matplotlib could not be loaded (ImportError: libpng16.so: failed to map segment from shared object): no plots "
        "written"]


def test_the_median_accuracy_of_a_cell_is_that_of_its_runs():
    """(it was 1 - the median error: 0.43799999999999994 where the run and sweep.csv said 0.438)"""
    from delgrad_core.training._sweep import summarise

    rows = [{"delays": "none", "hidden": 4, "seed": seed, "n_parameters": 28, "test_accuracy": accuracy,
             "test_error": 1.0 - accuracy} for seed, accuracy in enumerate([0.438, 0.1, 0.9])]
    (cell,) = summarise(rows)
    assert cell["median_test_accuracy"] == 0.438


@pytest.mark.parametrize(("accuracy", "error"), [(0.805, 0.195), (0.9, 0.1), (1.0, 0.0), (0.0, 1.0),
                                                 (350 / 359, 9 / 359)])
def test_a_trials_test_error_in_sweep_csv_is_the_fraction_of_wrong_samples(tmp_path, accuracy, error):
    """(1 - 0.805 read 0.19499999999999995 in sweep.csv)"""
    from delgrad_core.training._sweep import _row
    from delgrad_core.training._trials import Trial

    trial = Trial(settings={}, id="t0", folder=tmp_path, identity={})
    metrics = {"config": {"delays": "none", "hidden": 4, "seed": 0, "epochs": 1, "backend": "reference"},
               "test_accuracy": accuracy, "n_parameters": 28, "wall_seconds": 1.0}
    row = _row(trial, metrics)
    assert row["test_error"] == round(error, 12)


@pytest.mark.skipif(not plots_available(), reason="matplotlib is not installed")
@pytest.mark.parametrize("counts", [(44, 64, 84), (20, 400, 3000)])
def test_the_parameter_axis_of_sweep_png_has_numbers(tmp_path, monkeypatch, counts):
    """(parameter counts within one decade, 44 to 84, gave an axis without a single number: it
    is logarithmic, and only powers of ten were labelled)"""
    from delgrad_core.training import _plots, _sweep

    figures = []
    monkeypatch.setattr(_plots, "save_figure", lambda fig, path: figures.append(fig))
    summary = [{"delays": "none", "hidden": 5 * (k + 1), "n_parameters": n, "seeds": 1, "median_test_error": 0.2,
                "min_test_error": 0.2, "max_test_error": 0.2} for k, n in enumerate(counts)]
    _sweep._plot(summary, "yin_yang", tmp_path / "sweep.png")
    (fig,) = figures
    fig.canvas.draw()
    axis = fig.axes[0]
    low, high = axis.get_xlim()
    shown = [label.get_text() for label in axis.xaxis.get_ticklabels(which="both")
             if label.get_text() and low <= label.get_position()[0] <= high]
    assert len(shown) >= 2, shown


@pytest.mark.slow
def test_a_trials_warnings_name_the_trial(tmp_path):
    """(two trials' warnings read the same: which run had its steps skipped was not said)"""
    import subprocess

    command = [sys.executable, "-m", "delgrad_core.cli", "sweep", "--hidden", "4,5", "--delays", "none", "--seeds",
               "1", "--epochs", "1", "--jobs", "1", "--set", "batch_size=6000", "--out", "sweep"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    names = sorted(path.name for path in (tmp_path / "sweep" / "runs").iterdir())
    assert len(names) == 2
    for name in names:
        assert f"Warning: {name}: batch_size 6000 is larger than the training split" in result.stderr


def test_trial_folders_are_absolute_and_a_result_missing_here_fails_its_trial(tmp_path, monkeypatch):
    """(a relative --out was resolved in each Dask worker's own working directory: the sweep
    reported its trials finished, wrote a table without them and exited 0)"""
    from delgrad_core.training._executors import Unfinished, report
    from delgrad_core.training._sweep import plan_sweep

    monkeypatch.chdir(tmp_path)
    (trial,) = plan_sweep({"epochs": 1}, [3], ["none"], 1, "sweep")
    assert trial.folder.is_absolute() and trial.folder.is_relative_to(tmp_path / "sweep")
    unfinished, lines = Unfinished(), []
    report(trial, {"test_accuracy": 0.5}, unfinished, lines.append)  # (its folder here holds nothing)
    assert unfinished.failed == [f"{trial.name}: trained to 50.00 % test accuracy, but its folder {trial.folder} "
                                 "holds no finished run here: the workers must write to a folder this process reads "
                                 "(a disk they share; run the sweep again once it is there)"]
    assert lines == [f"FAILED {unfinished.failed[0]}"]


def test_a_trial_run_with_trial_n_is_said_as_trained_here(tmp_path, monkeypatch):
    """(--trial trains in this process, but a finished trial was checked as a worker's result:
    it could say "the workers must write to a folder this process reads", and exit 0)"""
    from delgrad_core.training import _sweep

    monkeypatch.setattr(_sweep, "train_trial", lambda settings, folder: {"test_accuracy": 0.5})
    lines = []
    assert _sweep.run_trial({"epochs": 1}, [3], ["none"], 1, tmp_path, 0, echo=lines.append) == {"test_accuracy": 0.5}
    assert len(lines) == 1 and lines[0].endswith(": test accuracy 50.00 %"), lines


def test_a_cells_summary_gives_the_median_least_and_largest_test_error_of_its_seeds():
    """(sweep_summary.json's and sweep.png's error range: min..max over the seeds)"""
    from delgrad_core.training._sweep import summarise

    rows = [{"delays": "none", "hidden": 4, "seed": seed, "n_parameters": 28, "test_accuracy": 1.0 - error,
             "test_error": error} for seed, error in enumerate([0.25, 0.5, 0.125])]
    (cell,) = summarise(rows)
    assert (cell["min_test_error"], cell["median_test_error"], cell["max_test_error"]) == (0.125, 0.25, 0.5)
    assert (cell["seeds"], cell["missing_seeds"]) == (3, [])


def test_sweep_csv_lists_its_trials_by_delay_kind_hidden_size_and_seed(tmp_path):
    """(whatever order the trials come in: the order of a sweep's rows is that of its cells)"""
    from delgrad_core.training import config_with_defaults
    from delgrad_core.training._sweep import sweep_rows
    from delgrad_core.training._trials import plan_trials

    trials = plan_trials({"epochs": 1}, [4, 3], ["none", "axonal"], 2, tmp_path)
    for trial in trials:
        trial.folder.mkdir(parents=True)
        config = config_with_defaults(trial.settings).resolved().to_dict()
        (trial.folder / "metrics.json").write_text(json.dumps(
            {"config": config, "test_accuracy": 0.5, "n_parameters": 1, "wall_seconds": 1.0}))
    rows = sweep_rows(trials[::-1])
    assert [(row["delays"], row["hidden"], row["seed"]) for row in rows] == [
        (kind, hidden, seed) for kind in ("axonal", "none") for hidden in (3, 4) for seed in (0, 1)]


@pytest.mark.parametrize("index", [True, "numpy 1"])
def test_run_trial_takes_numpy_integers_and_refuses_bools_as_the_sweeps_axes_do(tmp_path, monkeypatch, index):
    """(as plan_sweep takes n_seeds=np.int64(1) and refuses n_seeds=True: run_trial ran trial 1
    for index=True and refused np.int64(1) as "expected an index in [0, 1]")"""
    import numpy as np

    from delgrad_core import InvalidValueError
    from delgrad_core.training import _sweep

    monkeypatch.setattr(_sweep, "train_trial",
                        lambda settings, folder: {"test_accuracy": 0.5, "seed": settings["seed"]})
    if index is True:
        with pytest.raises(InvalidValueError, match="--trial: expected an index"):
            _sweep.run_trial({"epochs": 1}, [3], ["none"], 2, tmp_path, True, echo=lambda line: None)
    else:
        metrics = _sweep.run_trial({"epochs": 1}, [3], ["none"], 2, tmp_path, np.int64(1), echo=lambda line: None)
        assert metrics["seed"] == 1


def _finished_by_hand(trials, **changes) -> None:
    """Give each of `trials` a metrics.json as a finished run records it, its config changed by `changes`
    (a value of None drops the key, as runs recorded before it was)."""
    from delgrad_core.training import config_with_defaults

    for trial in trials:
        trial.folder.mkdir(parents=True, exist_ok=True)
        config = config_with_defaults(trial.settings).resolved().to_dict()
        for key, value in changes.items():
            if value is None:
                config.pop(key)
            else:
                config[key] = value
        (trial.folder / "metrics.json").write_text(json.dumps(
            {"config": config, "test_accuracy": 0.5, "n_parameters": 1, "wall_seconds": 1.0}))


def test_sweep_csv_gives_the_option_columns_of_runs_that_recorded_them_in_another_order_alike(tmp_path):
    """The option columns hold the options as JSON text (docs/training.md), shared by the trials of
    a sweep (`_row`): the same options read the same whatever order a run recorded their keys in."""
    from delgrad_core.training import config_with_defaults
    from delgrad_core.training._sweep import _row
    from delgrad_core.training._trials import plan_trials

    (trial,) = plan_trials({"epochs": 1}, [3], ["none"], 1, tmp_path)
    config = config_with_defaults(trial.settings).resolved().to_dict()
    columns = []
    for options in ({"n_threads": 2, "chip": 0}, {"chip": 0, "n_threads": 2}):
        metrics = {"config": dict(config, backend_options=options, dataset_options=options), "test_accuracy": 0.5,
                   "n_parameters": 1, "wall_seconds": 1.0}
        row = _row(trial, metrics)
        columns.append((row["backend_options"], row["dataset_options"]))
    assert columns == [('{"chip": 0, "n_threads": 2}', '{"chip": 0, "n_threads": 2}')] * 2


def test_sweep_csv_names_the_default_dataset_for_runs_recorded_before_runs_named_theirs(tmp_path):
    """(a run recorded without a dataset trained on the default one, yin_yang: `TrainingConfig.dataset`)"""
    from delgrad_core.training._sweep import sweep_rows
    from delgrad_core.training._trials import plan_trials

    trials = plan_trials({"epochs": 1}, [3], ["none"], 1, tmp_path)
    _finished_by_hand(trials, dataset=None)
    assert [(row["dataset"], row["dataset_options"]) for row in sweep_rows(trials)] == [("yin_yang", "{}")]


def test_the_sweeps_table_gives_the_median_accuracy_and_the_error_range_in_percent():
    """(its columns read "median acc %" and "error range %": min..max test error over the seeds)"""
    from delgrad_core.training._sweep import _table, summarise

    rows = [{"delays": "none", "hidden": 4, "seed": seed, "n_parameters": 28, "test_accuracy": 1.0 - error,
             "test_error": error} for seed, error in enumerate([0.25, 0.5, 0.125])]
    header, line = _table(summarise(rows)).splitlines()
    assert header.split() == ["delays", "hidden", "params", "seeds", "median", "acc", "%", "error", "range", "%"]
    assert line.split() == ["none", "4", "28", "3", "75.00", "12.50..50.00"]


def test_an_incomplete_sweep_without_matplotlib_warns_and_removes_the_earlier_figure(tmp_path, monkeypatch):
    """docs/training.md: without matplotlib a sweep warns that no plots are written, and an earlier
    sweep.png is removed with a note; so also when only some of its cells have results."""
    from delgrad_core.training._sweep import _write_results
    from delgrad_core.training._trials import plan_trials

    trials = plan_trials({"epochs": 1}, [3, 4], ["none"], 1, tmp_path)
    _finished_by_hand(trials[:1])
    (tmp_path / "sweep.png").write_bytes(b"the figure of an earlier collection")
    _without_matplotlib(monkeypatch)
    lines = []
    with pytest.warns(UserWarning, match="no plots written"):
        _write_results(trials, tmp_path, lines.append)
    assert not (tmp_path / "sweep.png").exists()
    assert len(lines) == 1 and lines[0].startswith(f"note: removed {tmp_path / 'sweep.png'}"), lines


def test_run_trial_of_a_finished_trial_says_so_and_trains_nothing(tmp_path, monkeypatch):
    """`run_trial`: a trial finished already returns None (a SLURM task run again says so in its log)."""
    from delgrad_core.training import _sweep as sweep_module

    out = tmp_path / "sweep"
    _sweep(out)
    monkeypatch.setattr(sweep_module, "train_trial", lambda settings, folder: pytest.fail("trained again"))
    lines = []
    assert sweep_module.run_trial({"epochs": 1}, [4], ["none"], 1, out, 0, echo=lines.append) is None
    (trial,) = sweep_module.plan_sweep({"epochs": 1}, [4], ["none"], 1, out)
    assert lines == [f"{trial.name}: finished already"]


def _cell(kind, hidden, n_parameters, error):
    """A row of the sweep's summary: every seed with `error`, or, with `error` None, no result yet."""
    if error is None:
        return {"delays": kind, "hidden": hidden, "n_parameters": None, "seeds": 0, "missing_seeds": [0],
                "median_test_accuracy": None, "median_test_error": None, "min_test_error": None,
                "max_test_error": None}
    return {"delays": kind, "hidden": hidden, "n_parameters": n_parameters, "seeds": 1, "missing_seeds": [],
            "median_test_accuracy": 1 - error, "median_test_error": error, "min_test_error": error,
            "max_test_error": error}


def _drawn(monkeypatch, tmp_path, summary, dataset="yin_yang"):
    """The figure `_sweep._plot` draws of `summary` (not written), drawn on its canvas."""
    from delgrad_core.training import _plots, _sweep

    figures = []
    monkeypatch.setattr(_plots, "save_figure", lambda fig, path: figures.append(fig))
    _sweep._plot(summary, dataset, tmp_path / "sweep.png")
    (fig,) = figures
    fig.canvas.draw()
    return fig


def _tick_labels(axis, which):
    low, high = axis.get_view_interval()
    return [label.get_text() for label in axis.get_ticklabels(which=which) if low <= label.get_position()[0] <= high]


@needs_matplotlib
def test_cells_without_results_are_left_out_of_sweep_png(monkeypatch, tmp_path):
    """An incomplete sweep's figure shows the cells with results; a delay kind without any is no
    legend entry."""
    summary = [_cell("axonal", 4, None, None), _cell("none", 4, 28, 0.2), _cell("none", 6, None, None),
               _cell("synaptic", 4, None, None)]
    fig = _drawn(monkeypatch, tmp_path, summary)
    for ax, x in zip(fig.axes, (28.0, 4.0)):
        assert [text.get_text() for text in ax.get_legend().get_texts()] == ["none"]
        assert [line.get_xydata().tolist() for line in ax.lines if line.get_marker() == "o"] == [[[x, 20.0]]]


@needs_matplotlib
def test_the_parameter_axis_numbers_its_decades_plainly(monkeypatch, tmp_path):
    """Parameter counts a decade or more apart are numbered at the powers of ten only, as plain
    numbers (100, not 10^2); within a decade the minor ticks are numbered too."""
    fig = _drawn(monkeypatch, tmp_path, [_cell("none", 4, 30, 0.2), _cell("none", 40, 300, 0.1)])
    axis = fig.axes[0].xaxis
    assert "100" in _tick_labels(axis, "major")
    assert not any(_tick_labels(axis, "minor"))
    fig = _drawn(monkeypatch, tmp_path, [_cell("none", 4, 30, 0.2), _cell("none", 8, 60, 0.1)])
    assert any(_tick_labels(fig.axes[0].xaxis, "minor"))


@needs_matplotlib
def test_the_title_of_sweep_png_shows_the_dataset_name_letter_for_letter(monkeypatch, tmp_path):
    """(two `$` in the name would be drawn as a formula)"""
    fig = _drawn(monkeypatch, tmp_path, [_cell("none", 4, 28, 0.2)], dataset="$x^2$ data")
    # (fig.texts: Figure.get_suptitle is matplotlib 3.8's, above the oldest version allowed)
    assert r"\$x^2\$ data: median test error over seeds (bars: min..max)" in [text.get_text() for text in fig.texts]


def test_without_matplotlib_an_earlier_sweep_png_is_removed_with_a_note_and_none_is_not_mentioned(
        monkeypatch, tmp_path):
    """Without matplotlib the sweep warns; an earlier sweep.png, which may show results the table
    no longer has, is removed with a note, and there is no note when there was none."""
    from delgrad_core.training import _plots, _sweep

    monkeypatch.setattr(_plots, "why_no_plots", lambda: "matplotlib is not installed")
    said = []
    with pytest.warns(UserWarning, match="matplotlib is not installed: no plots written"):
        _sweep._plot([_cell("none", 4, 28, 0.2)], "yin_yang", tmp_path / "sweep.png", said.append)
    assert said == [] and list(tmp_path.iterdir()) == []
    (tmp_path / "sweep.png").write_bytes(b"\x89PNG")
    with pytest.warns(UserWarning, match="no plots written"):
        _sweep._plot([_cell("none", 4, 28, 0.2)], "yin_yang", tmp_path / "sweep.png", said.append)
    assert said == [f"note: removed {tmp_path / 'sweep.png'}, drawn from an earlier collection of results: it "
                    "cannot be drawn anew now (matplotlib is not installed)"]
    assert list(tmp_path.iterdir()) == []

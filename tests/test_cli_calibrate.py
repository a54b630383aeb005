"""`delgrad calibrate`: progress bar from the backend's reports, cache status, summary table."""

import json
import signal
import warnings

import pytest

from delgrad_core import BackendError, Calibration
from delgrad_core.cli import main
from delgrad_core.testing import MockBackend, cli_runner

from _registries import install_only_backends


class CachingBackend(MockBackend):
    """Calibrates in three reported steps, or serves the calibration from a cache (a dict)."""

    store: dict = {}

    def __init__(self, chip: int = 0, gain: float = 1.0):
        super().__init__(name="caching")
        self.chip, self.gain = chip, gain

    def _calibrate(self, network, seed, progress):
        key = f"chip{self.chip}-gain{self.gain}"
        if key in self.store:
            self.calibration_cache = ("hit", f"/cache/{key}")
            return self.store[key]
        for done in (1, 2, 3):
            progress(done, 3)
        summary = {"columns": ["parameter", "std", "failed"], "rows": [["gain", 0.0123456, 2], ["tau", None, 0]]}
        calibration = Calibration(self.name, {"chip": self.chip, "summary": summary}, key)
        self.store[key] = calibration
        self.calibration_cache = ("stored", f"/cache/{key}")
        return calibration


def _register(monkeypatch, name: str, backend_class) -> None:
    """`backend_class` as the only registered backend, `name`, with an empty store."""
    install_only_backends(monkeypatch, {name: backend_class})
    monkeypatch.setattr(backend_class, "store", {})


@pytest.fixture
def registered(monkeypatch):
    _register(monkeypatch, "caching", CachingBackend)


def test_calibrate_reports_progress_summary_and_then_a_cache_hit(registered):
    first = cli_runner().invoke(main, ["calibrate", "--backend", "caching", "--chip", "4"])
    assert first.exit_code == 0, first.output
    assert "3/3" in first.stderr  # the progress bar, fed by the backend's reports
    assert first.stderr.count("\n") == 1  # (one bar, redrawn in place: not one per report)
    lines = first.stdout.splitlines()
    assert "stored in the cache: /cache/chip4-gain1.0" in lines[1]
    assert lines[2].split() == ["parameter", "std", "failed"]
    assert lines[3].split() == ["gain", "0.01235", "2"] and lines[4].split() == ["tau", "-", "0"]
    assert "chip: 4" in lines
    second = cli_runner().invoke(main, ["calibrate", "--backend", "caching", "--chip", "4", "--no-progress"])
    assert "cache hit: loaded /cache/chip4-gain1.0 (nothing was measured)" in second.stdout
    assert second.stderr == ""


def test_calibrate_passes_backend_options_and_prints_json(registered):
    result = cli_runner().invoke(main, ["calibrate", "--backend", "caching", "--backend-option", "gain=2.5",
                                       "--backend-option", "chip=7", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["cache"] == {"status": "stored", "path": "/cache/chip7-gain2.5"}
    assert report["values"]["chip"] == 7 and report["cache_key"] == "chip7-gain2.5"


class TroubledBackend(MockBackend):
    """Reports a growing amount of work, warns, records its seed; its connection fails at close."""

    store: dict = {}

    def __init__(self):
        super().__init__(name="troubled")

    def _calibrate(self, network, seed, progress):
        for done, total in ((1, 3), (3, 4), (4, 4)):
            progress(done, total)
        warnings.warn("neuron 7 did not converge", UserWarning)
        return Calibration(self.name, {"seed": seed})

    def _close(self):
        raise BackendError("the link dropped")


@pytest.mark.parametrize("as_json", [False, True])
def test_calibrate_passes_the_seed_shows_warnings_and_reports_despite_a_failed_close(monkeypatch, as_json):
    """The seed reaches the backend; a warning given while calibrating is shown (after the bar);
    a bar follows a growing total, and none is drawn under --json; a connection that fails
    at close is a warning, not an error that hides the calibration (docs/backends.md)."""
    _register(monkeypatch, "troubled", TroubledBackend)
    result = cli_runner().invoke(main, ["calibrate", "--backend", "troubled", "--seed", "7"] + ["--json"] * as_json)
    assert result.exit_code == 0, result.output
    seed = json.loads(result.stdout)["values"]["seed"] if as_json else result.stdout.splitlines()[1]
    assert seed == (7 if as_json else "seed: 7")
    assert "neuron 7 did not converge" in result.stderr and "the link dropped; the calibration is complete" in \
        result.stderr
    assert ("4/4" in result.stderr) is not as_json and ("%|" in result.stderr) is not as_json


def test_what_a_backend_prints_while_it_calibrates_goes_to_stderr_under_json(monkeypatch):
    """(it came before the JSON on standard output, which no JSON reader then took)"""
    class Chatty(TroubledBackend):
        def _calibrate(self, network, seed, progress):
            print("chatty: measuring")
            return super()._calibrate(network, seed, progress)

        def _close(self):
            pass

    _register(monkeypatch, "troubled", Chatty)
    result = cli_runner().invoke(main, ["calibrate", "--backend", "troubled", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["backend"] == "troubled" and "chatty: measuring" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--chip", "1", "--backend-option", "chip=2"], "--chip 1 contradicts --backend-option chip=2"),
    (["--backend-option", "gain"], "--backend-option: expected KEY=VALUE with KEY an identifier, got 'gain'"),
    (["--backend-option", "colour=1"], "unknown option(s) colour; allowed: chip, gain"),
    (["--backend", "nonexistent"], "unknown backend 'nonexistent'; choose one of"),
])
def test_calibrate_refuses_bad_options_in_one_line(registered, args, message):
    """Usage errors, status 2, as in `delgrad train` (an unknown backend or option was status 1)."""
    result = cli_runner().invoke(main, ["calibrate", "--backend", "caching", *args])
    assert result.exit_code == 2 and message in result.output, result.output


@pytest.mark.parametrize("backend", ["reference", "mock-hil"])
def test_chip_for_a_backend_without_one_names_chip_and_where_a_service_takes_it(backend):
    """(it said "unknown option(s) chip", an option the user had not given as such)"""
    result = cli_runner().invoke(main, ["calibrate", "--backend", backend, "--chip", "3"])
    assert result.exit_code == 2 and f"--chip: backend '{backend}' has no option chip, which --chip sets (e.g. of " \
        "bss2-emulator; mock-hil's own service takes it as --backend-option 'device_options={\"chip\": N}')" \
        in result.output, result.output


def test_chip_is_told_apart_from_an_unknown_option_whose_name_starts_with_it(registered):
    """(--chip was recognised by the text "unknown option(s) chip" of the error, which an unknown
    option chipx also gives: the backend, which has a chip, was said to have none)"""
    result = cli_runner().invoke(main, ["calibrate", "--backend", "caching", "--chip", "3",
                                        "--backend-option", "chipx=1"])
    assert result.exit_code == 2 and "unknown option(s) chipx" in result.output, result.output
    assert "has no option chip" not in result.output


def test_calibrate_a_backend_without_calibration():
    result = cli_runner().invoke(main, ["calibrate", "--backend", "reference"])
    assert result.exit_code == 0, result.output
    assert "nothing to calibrate" in result.stdout and result.stderr == ""


def test_a_calibration_held_inside_another_shows_its_summary_table():
    """A client backend's calibration holding its device's (as mock-hil's does)."""
    from delgrad_core.cli._calibrate_cmd import _report

    device = {"backend": "chip-x", "cache_key": "k", "values": {
        "summary": {"columns": ["parameter", "ratio"], "rows": [["leak", 0.25]]}, "chip": 3}}
    lines = _report("client-y", Calibration("client-y", {"device": device}), None, 0.5)
    assert lines[1:] == ["device (chip-x):", "  parameter  ratio", "  leak       0.25", "  chip: 3"]


class UnorderedBackend(MockBackend):
    """Reports values out of key order; a cache hit returns them as a cache stores them (sorted)."""

    store: dict = {}

    def __init__(self):
        super().__init__(name="unordered")

    def _calibrate(self, network, seed, progress):
        if "entry" in self.store:
            self.calibration_cache = ("hit", "/cache/entry")
            return Calibration.from_bytes(self.store["entry"])
        calibration = Calibration(self.name, {"zeta": 1, "alpha": {"y": 2, "b": 3}, "mid": [3, 1]}, "entry")
        self.store["entry"] = calibration.to_bytes()
        self.calibration_cache = ("stored", "/cache/entry")
        return calibration


@pytest.fixture
def unordered(monkeypatch):
    _register(monkeypatch, "unordered", UnorderedBackend)


@pytest.mark.parametrize("as_json", [[], ["--json"]])
def test_calibrate_shows_the_values_in_one_order_fresh_or_from_the_cache(unordered, as_json):
    """(a cache hit listed them in another order than the fresh calibration)"""
    fresh, hit = (cli_runner().invoke(main, ["calibrate", "--backend", "unordered", "--no-progress", *as_json])
                  for _ in range(2))
    assert fresh.exit_code == hit.exit_code == 0, fresh.output + hit.output
    if as_json:
        assert list(json.loads(fresh.stdout)["values"]) == list(json.loads(hit.stdout)["values"]) == \
            ["alpha", "mid", "zeta"]
    else:
        assert fresh.stdout.splitlines()[2:] == hit.stdout.splitlines()[2:] == \
            ['alpha: {"b": 3, "y": 2}', "mid: [3, 1]", "zeta: 1"]


def test_a_lost_stop_signal_during_calibrate_reports_nothing(registered, monkeypatch):
    """(a stop signal whose KeyboardInterrupt some code swallowed: status 143, no values shown)"""
    from test_cli_hostile_outputs import losing_a_stop_signal

    monkeypatch.setattr(CachingBackend, "_calibrate", losing_a_stop_signal(CachingBackend._calibrate, signal.SIGTERM))
    result = cli_runner().invoke(main, ["calibrate", "--backend", "caching", "--no-progress"])
    assert result.exit_code == 143 and "interrupted" in result.stderr, result.output
    assert result.stdout == ""


@pytest.mark.parametrize("command", [["train", "--epochs", "1", "--hidden", "3"], ["calibrate"],
                                     ["evaluate", "."], ["sweep", "--hidden", "3", "--epochs", "1", "--seeds", "1"]])
def test_a_bad_thread_count_variable_is_a_usage_error_before_any_work(command, monkeypatch, tmp_path):
    """(it was found at the first job, after the data was loaded and the backend calibrated, and
    said "backend 'reference' while executing: DELGRAD_NUM_THREADS: ..."; a sweep ignored it)"""
    monkeypatch.setenv("DELGRAD_NUM_THREADS", "abc")
    monkeypatch.chdir(tmp_path)
    result = cli_runner().invoke(main, [*command, *(["--out", "run"] if command[0] in ("train", "sweep") else [])])
    assert result.exit_code == 2 and "DELGRAD_NUM_THREADS: expected an integer from 1 to 256, got 'abc'" in \
        result.output and "backend" not in result.output.split("Error:")[-1], result.output
    assert not (tmp_path / "run").exists()


def test_a_calibration_of_arrays_only_is_not_said_to_be_empty(monkeypatch):
    """(a calibration may hold only named arrays, e.g. per-neuron settings: "nothing to calibrate"
    is for one that holds neither values nor arrays)"""
    import numpy as np

    class ArraysOnly(MockBackend):
        store: dict = {}

        def __init__(self):
            super().__init__(name="arrays-only")

        def _calibrate(self, network, seed, progress):
            return Calibration(self.name, {}, arrays={"leak": np.array([0.5, 0.25])})

    _register(monkeypatch, "arrays-only", ArraysOnly)
    result = cli_runner().invoke(main, ["calibrate", "--backend", "arrays-only"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("calibration of 'arrays-only' in ") and "nothing to calibrate" not in result.stdout


def test_a_summary_whose_rows_do_not_fit_its_columns_is_shown_as_a_value():
    """Only a summary of the convention ({"columns": [...], "rows": [[...], ...]}, each row one
    value per column) is drawn as a table; another is shown as its JSON, not a crash."""
    from delgrad_core.cli._calibrate_cmd import _report

    for summary in ({"columns": ["parameter", "std"], "rows": [["gain"], ["tau", 0.5]]},
                    {"columns": ["parameter", "std"], "rows": None}):
        lines = _report("chip-x", Calibration("chip-x", {"summary": summary}), None, 0.5)
        assert lines[1:] == [f"summary: {json.dumps(summary, sort_keys=True)}"]


def test_a_calibration_the_cache_could_not_keep_is_said_to_be_not_stored():
    """docs/backends.md: calibration_cache ("not_stored", path) when the cache could not be written."""
    from delgrad_core.cli._calibrate_cmd import _report

    lines = _report("chip-x", Calibration("chip-x", {"chip": 1}), ("not_stored", "/cache/chip-x"), 0.5)
    assert lines[1:] == ["not stored in the cache: /cache/chip-x", "chip: 1"]

"""The calibration cache: npz + JSON files (no pickle) written atomically, keyed by chip,
targets, options and emulator version; hits, misses and unreadable files."""

import json
import zipfile

import numpy as np
import pytest

import delgrad_core as dg
from delgrad_bss2 import cache_directory


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DELGRAD_BSS2_CACHE", str(tmp_path))
    return tmp_path


def _calibrate(progress=None, **options):
    backend = dg.get_backend("bss2-emulator", **options)
    return backend, backend.calibrate(progress=progress)


def test_the_second_calibration_is_a_cache_hit(cache):
    reports = []
    backend, first = _calibrate(lambda done, total: reports.append(done))
    status, path = backend.calibration_cache
    assert status == "stored" and reports and path.startswith(str(cache))
    again, second = _calibrate(lambda *args: pytest.fail("a cache hit measures nothing"))
    assert again.calibration_cache == ("hit", path)
    assert second == first and second.digest == first.digest
    files = list(cache.iterdir())
    assert [f.name for f in files] == [f"{first.cache_key}.npz"]  # no temporary file left behind
    with zipfile.ZipFile(files[0]) as archive:
        assert all(name.endswith(".npy") for name in archive.namelist())
        for name in archive.namelist():  # loadable without pickle
            np.lib.format.read_array(archive.open(name), allow_pickle=False)
    document = json.loads(bytes(dg.Calibration.load(files[0]).archive_arrays()["calibration.json"]))
    assert document["values"]["chip"] == 0


# (the calibration reads these through the fixed pattern's scale, the delay measurement and its clock)
@pytest.mark.parametrize("change", [{"chip": 1}, {"threshold_cadc": 151.0}, {"tau_us": 6.5}, {"calibrated": False},
                                    {"threshold_noise": 0.05}, {"threshold": 2.0}, {"register_min": 60},
                                    {"timestamp_us": 0.004}])
def test_a_changed_chip_target_or_option_is_a_miss(cache, change):
    _, first = _calibrate()
    backend, other = _calibrate(**change)
    assert backend.calibration_cache[0] == "stored" and other.cache_key != first.cache_key
    assert len(list(cache.iterdir())) == 2
    assert _calibrate(**change)[0].calibration_cache[0] == "hit"


# a changed value of every option the calibration does not read
NEUTRAL_CHANGES = {"synapse_rows": 128, "weight_max": 31, "weight_scale": 20.0, "slot_tau": 12.0, "register_max": 200,
                   "host_overhead_job_s": 0.5, "host_overhead_sample_us": 10.0, "comparator_offset": 0.3,
                   "comparator_spread": 0.0}


@pytest.mark.parametrize("option", sorted(NEUTRAL_CHANGES))
def test_a_changed_option_the_calibration_does_not_read_is_a_hit(cache, option):
    """(changing e.g. slot_tau or weight_scale calibrated the chip again, to the same result)"""
    from delgrad_bss2._calibration import CALIBRATION_NEUTRAL_OPTIONS

    assert set(NEUTRAL_CHANGES) == CALIBRATION_NEUTRAL_OPTIONS
    _, first = _calibrate()
    change = {option: NEUTRAL_CHANGES[option]}
    backend, cached = _calibrate(lambda *args: pytest.fail("a cache hit measures nothing"), **change)
    assert backend.calibration_cache[0] == "hit" and cached == first
    assert cached == _calibrate(cache=False, **change)[1]  # (measured again: the same calibration)


def test_the_key_includes_the_emulator_version(cache, monkeypatch):
    _, first = _calibrate()
    monkeypatch.setattr("delgrad_bss2._calibration.EMULATOR_VERSION", 99)
    backend, second = _calibrate()
    assert backend.calibration_cache[0] == "stored" and second.cache_key != first.cache_key


def test_an_unreadable_cache_file_is_reported_and_replaced(cache):
    backend, first = _calibrate()
    path = backend.calibration_cache[1]
    with open(path, "wb") as handle:
        handle.write(b"not an archive")
    with pytest.warns(UserWarning, match="ignoring the unreadable cached calibration"):
        backend, again = _calibrate()
    assert backend.calibration_cache == ("stored", path) and again == first
    assert _calibrate()[0].calibration_cache[0] == "hit"


def test_a_cache_file_that_breaks_the_reader_is_reported_and_replaced(cache):
    from delgrad_core._npz import npz_bytes

    backend, first = _calibrate()
    path = backend.calibration_cache[1]
    nested = "[" * 100_000 + "]" * 100_000  # (JSON the parser cannot follow: RecursionError)
    with open(path, "wb") as handle:
        handle.write(npz_bytes({"calibration.json": np.array(nested)}))
    with pytest.warns(UserWarning, match="ignoring the unreadable cached calibration .*nested too deeply"):
        backend, again = _calibrate()
    assert backend.calibration_cache == ("stored", path) and again == first


def test_a_calibration_that_stops_before_it_is_stored_names_no_earlier_entry(cache):
    """`backend.calibration_cache` is the entry the calibration used (docs/bss2.md); one that
    stopped while measuring used none, and must not keep the earlier calibration's ("stored", path)."""

    class Stop(Exception):
        pass

    def stop(done, total):
        raise Stop

    backend, first = _calibrate()
    assert backend.calibration_cache == ("stored", str(cache / f"{first.cache_key}.npz"))
    (cache / f"{first.cache_key}.npz").unlink()
    with pytest.raises(Exception) as raised:
        backend.calibrate(progress=stop)
    assert isinstance(raised.value, Stop) or isinstance(raised.value.__cause__, Stop)
    assert backend.calibration_cache is None and list(cache.iterdir()) == []


def test_caching_can_be_switched_off(cache):
    backend, _ = _calibrate(cache=False)
    assert backend.calibration_cache is None and list(cache.iterdir()) == []


def test_cache_directory_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DELGRAD_BSS2_CACHE", str(tmp_path / "explicit"))
    assert cache_directory() == tmp_path / "explicit"
    monkeypatch.setenv("DELGRAD_BSS2_CACHE", "")  # (set but empty: as unset, docs/bss2.md)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_directory() == tmp_path / "xdg" / "delgrad" / "bss2"
    monkeypatch.delenv("DELGRAD_BSS2_CACHE")
    assert cache_directory() == tmp_path / "xdg" / "delgrad" / "bss2"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_directory() == tmp_path / "home" / ".cache" / "delgrad" / "bss2"


@pytest.mark.parametrize("below", ["", "sub"], ids=["the cache a file", "a file above the cache"])
def test_a_cache_that_cannot_be_written_warns_and_the_calibration_is_used(tmp_path, monkeypatch, below):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DELGRAD_BSS2_CACHE", str(blocker / below))
    warned = "could not store the calibration in the cache.*DELGRAD_BSS2_CACHE.*cache=false"
    with pytest.warns(UserWarning, match=warned) as told:
        backend, calibration = _calibrate()
    # (the file in the way is named, and the entry's path once: it was "(ENTRY: ENTRY: FILE is not ...)")
    message = str(told[0].message)
    assert f"{blocker} is not a folder but a file" in message and message.count(backend.calibration_cache[1]) == 1
    assert backend.calibration_cache[0] == "not_stored"
    assert calibration == dg.get_backend("bss2-emulator", cache=False).calibrate()
    assert blocker.read_text() == "not a folder"


def test_a_cache_folder_that_cannot_be_searched_warns_and_the_calibration_is_made(cache, monkeypatch):
    """(a folder of mode 000: Path.exists raised PermissionError, and calibration, so training on
    the emulator, failed, where an unwritable cache warns)"""
    from pathlib import Path

    exists = Path.exists

    def refused(path, *args, **kwargs):  # (below the cache's parent: the cache folder, and what it holds)
        if cache in path.parents:
            raise PermissionError(13, "Permission denied", str(path))
        return exists(path, *args, **kwargs)

    monkeypatch.setenv("DELGRAD_BSS2_CACHE", str(cache / "bss2"))
    monkeypatch.setattr(Path, "exists", refused)
    with pytest.warns(UserWarning) as told:
        _, calibration = _calibrate()
    assert [str(warning.message).split(" (")[0].split("bss2-emulator-")[0] for warning in told] == [
        f"cannot read the calibration cache entry {cache / 'bss2'}/", "could not store the calibration in the cache"]
    assert calibration == dg.get_backend("bss2-emulator", cache=False).calibrate()


def test_the_calibrate_command_says_so_in_one_warning_line(tmp_path, monkeypatch):
    from delgrad_core.cli import main
    from delgrad_core.testing import cli_runner

    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("DELGRAD_BSS2_CACHE", str(tmp_path / "a-file"))
    result = cli_runner().invoke(main, ["calibrate", "--backend", "bss2-emulator"])
    assert result.exit_code == 0, result.output
    assert "Warning: could not store the calibration in the cache" in result.stderr
    assert "UserWarning" not in result.stderr and "not stored in the cache" in result.stdout
    # (after the progress bar, on a line of its own: it was glued to the bar's end, "...step/s]Warning: ...")
    assert "calibrating bss2-emulator" in result.stderr and "\nWarning: could not store" in result.stderr
    assert result.stderr.index("calibrating bss2-emulator") < result.stderr.index("Warning: could not store")


def test_a_cache_entry_that_is_a_folder_warns_and_the_calibration_is_used(cache):
    """(the folder ended calibration, and so training, with an error)"""
    key = dg.get_backend("bss2-emulator")._key
    (cache / f"{key}.npz").mkdir()
    with pytest.warns(UserWarning) as warned:
        backend, calibration = _calibrate()
    assert backend.calibration_cache[0] == "not_stored" and calibration.values["calibrated"] is True
    assert any("could not store the calibration" in str(w.message) for w in warned)


def test_a_cache_folder_whose_name_is_too_long_warns_once_each_for_reading_and_writing(tmp_path, monkeypatch):
    """(the failed look-up was reported as an unreadable cached calibration, with the OSError's repr)"""
    folder = tmp_path / ("x" * 300)
    monkeypatch.setenv("DELGRAD_BSS2_CACHE", str(folder))
    with pytest.warns(UserWarning) as warned:
        backend, calibration = _calibrate()
    entry = folder / f"{calibration.cache_key}.npz"
    assert [str(w.message) for w in warned] == [
        f"cannot read the calibration cache entry {entry} (File name too long): calibrating anew",
        f"could not store the calibration in the cache ({entry}: File name too long); going on without it (set "
        "DELGRAD_BSS2_CACHE to a writable folder, or pass the backend option cache=false)"]
    assert backend.calibration_cache == ("not_stored", str(entry)) and calibration.values["calibrated"] is True


def test_an_entry_holding_another_keys_calibration_is_measured_again(cache):
    """(a cache file copied or renamed to another key's name: never taken for that key)"""
    _, chip_0 = _calibrate()
    _, chip_1 = _calibrate(chip=1)
    (cache / f"{chip_1.cache_key}.npz").write_bytes((cache / f"{chip_0.cache_key}.npz").read_bytes())
    with pytest.warns(UserWarning, match=f"ignoring the cached calibration .*: it holds key '{chip_0.cache_key}'"):
        again, measured = _calibrate(chip=1)
    assert measured == chip_1 and again.calibration_cache[0] == "stored"
    assert dg.Calibration.load(cache / f"{chip_1.cache_key}.npz") == chip_1


def test_a_dangling_link_at_an_entry_is_replaced_without_following_it(cache, tmp_path_factory):
    """(the atomic write followed the link and created its target's folders outside the cache)"""
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    entry = cache / f"{dg.get_backend('bss2-emulator')._key}.npz"
    entry.symlink_to(elsewhere / "missing" / "folders" / "entry.npz")
    with pytest.warns(UserWarning, match=f"replacing the dangling link {entry} -> {elsewhere}/missing"):
        backend, calibration = _calibrate()
    assert backend.calibration_cache == ("stored", str(entry))
    assert list(elsewhere.iterdir()) == [] and entry.is_file() and not entry.is_symlink()
    assert _calibrate()[0].calibration_cache == ("hit", str(entry))


def test_a_link_at_an_entry_to_a_file_that_is_no_calibration_is_replaced_not_written_through(cache,
                                                                                             tmp_path_factory):
    """(the atomic write followed the link and wrote the calibration over the user's file)"""
    precious = tmp_path_factory.mktemp("home") / "precious.txt"
    precious.write_text("precious data")
    entry = cache / f"{dg.get_backend('bss2-emulator')._key}.npz"
    entry.symlink_to(precious)
    with pytest.warns(UserWarning) as warned:
        backend, calibration = _calibrate()
    assert [str(w.message).split(":")[0] for w in warned] == [f"ignoring the unreadable cached calibration {entry}",
                                                             f"replacing the link {entry} -> {precious} in the "
                                                             "calibration cache with the calibration (what it points "
                                                             "to is left as it is)"]
    assert precious.read_text() == "precious data"
    assert backend.calibration_cache == ("stored", str(entry)) and entry.is_file() and not entry.is_symlink()


@pytest.mark.parametrize(("edit", "problem"), [
    (lambda arrays, values: arrays.update({"dac.leak": arrays["dac.leak"][:10]}), "dac.leak: expected 512 integers"),
    (lambda arrays, values: arrays.pop("success.leak"), "success.leak: expected 512 booleans, got nothing"),
    (lambda arrays, values: arrays.update({"dac.gain": arrays["dac.gain"] * 1.0}), "dac.gain: expected 512 integers"),
    (lambda arrays, values: arrays.update({"dac.threshold": arrays["dac.threshold"] + 5000}),
     "dac.threshold: settings must lie in 0..1023"),
    (lambda arrays, values: values.update({"calibrated": False}), "values.calibrated: expected true, got false"),
    # (these were trusted: `delgrad calibrate --chip 0` printed "chip: -1", or the summary as raw JSON)
    (lambda arrays, values: values.update({"chip": -1}), "values.chip: expected 0, got -1"),
    (lambda arrays, values: values.update({"emulator_version": "4"}), 'values.emulator_version: expected 4, got "4"'),
    (lambda arrays, values: values.update({"targets": {}}), "values.targets: expected {"),
    (lambda arrays, values: values.update({"summary": "hello"}), "values.summary: expected a table of the columns "
                                                                  "parameter, unit"),
    # (these were trusted: a KeyError at every execute, or placements on circuits that had failed)
    (lambda arrays, values: values.pop("failed_circuits"), "values.failed_circuits: expected the \\d+ that the "
                                                           "success flags mark failed"),
    (lambda arrays, values: values.update({"failed_delay_elements": []}), "values.failed_delay_elements: expected"),
])
def test_a_calibration_whose_contents_do_not_fit_its_key_is_measured_again_or_refused(cache, edit, problem):
    """(a cached file edited inside its npz container, or a forged calibration, was trusted: an
    IndexError or KeyError from deep inside, or silently other results)"""
    backend, good = _calibrate()
    arrays, values = dict(good.arrays), dict(good.values)
    edit(arrays, values)
    forged = dg.Calibration(good.backend, values, good.cache_key, arrays)
    forged.save(cache / f"{good.cache_key}.npz")
    with pytest.warns(UserWarning, match=f"ignoring the cached calibration .*: {problem}.*measured again and replaced"):
        again, measured = _calibrate()
    assert measured == good and again.calibration_cache[0] == "stored"
    network = backend.represent(dg.Network.feedforward([20, 4, 3], delay_kind=["axonal", "none"], seed=0,
                                                       neuron=dg.NeuronParameters(2.6, 1.0, 1.0)))
    with pytest.raises(dg.CalibrationError, match=f"calibration: {problem}"):
        backend.execute(network, np.full((1, 20), 0.5), calibration=forged)


def test_a_cached_calibration_of_another_backend_is_measured_again(cache):
    """(an entry whose backend field was edited made every calibrate raise, and was never replaced)"""
    _, good = _calibrate()
    dg.Calibration("reference", good.values, good.cache_key, good.arrays).save(cache / f"{good.cache_key}.npz")
    with pytest.warns(UserWarning, match="ignoring the cached calibration .*: backend: expected 'bss2-emulator', got "
                                         "'reference'; it is measured again and replaced"):
        again, measured = _calibrate()
    assert measured == good and again.calibration_cache[0] == "stored"


def test_an_entry_changed_since_it_was_written_is_calibrated_anew(cache):
    """(an entry whose arrays were edited and saved again whole was a cache hit, and training on it
    reached 0 %: the zip's checksums are those of the edited file)"""
    _, made = _calibrate()
    entry = next(cache.glob("*.npz"))
    with np.load(entry) as stored:
        arrays = dict(stored)
    arrays["calibration.arrays.dac.threshold"] = np.full_like(arrays["calibration.arrays.dac.threshold"], 700)
    with open(entry, "wb") as handle:
        np.savez(handle, **arrays)
    backend = dg.get_backend("bss2-emulator")
    with pytest.warns(UserWarning, match=r"ignoring the unreadable cached calibration .*: the calibration is not the "
                                         r"one written there \(its content digest [0-9a-f]{12}\.\.\. was recorded, "
                                         r"the content now has [0-9a-f]{12}\.\.\.\): changed since, e.g. edited by "
                                         r"hand"):
        again = backend.calibrate()
    assert again == made and backend.calibration_cache[0] == "stored"

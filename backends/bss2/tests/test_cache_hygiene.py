"""The calibration cache's folder: relative XDG_CACHE_HOME ignored (XDG Base Directory
specification), a relative DELGRAD_BSS2_CACHE taken from the working directory when read, a blank one refused, and
the dead temporary files of killed writes removed when an entry is stored."""

import os
import time

import pytest

import delgrad_core as dg
from delgrad_bss2 import cache_directory


def test_a_relative_xdg_cache_home_is_ignored(monkeypatch, tmp_path):
    monkeypatch.delenv("DELGRAD_BSS2_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    for relative in ("cache", "./cache", "~/cache"):
        monkeypatch.setenv("XDG_CACHE_HOME", relative)
        assert cache_directory() == tmp_path / "home" / ".cache" / "delgrad" / "bss2"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # (an absolute one is used)
    assert cache_directory() == tmp_path / "xdg" / "delgrad" / "bss2"


def test_a_relative_delgrad_bss2_cache_is_made_absolute_when_read(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DELGRAD_BSS2_CACHE", "calibrations")
    assert cache_directory() == tmp_path / "calibrations" and cache_directory().is_absolute()
    backend = dg.get_backend("bss2-emulator")
    backend.calibrate()
    status, path = backend.calibration_cache
    assert status == "stored" and path.startswith(str(tmp_path / "calibrations") + os.sep)


def test_storing_an_entry_removes_only_dead_temporaries_of_entries(monkeypatch, tmp_path):
    monkeypatch.setenv("DELGRAD_BSS2_CACHE", str(tmp_path))
    hour_ago = time.time() - 3700
    dead = [".0123abcd.npz.abcd1234.tmp", ".other-key.npz.x_y2z3w4.tmp"]
    young = [".0123abcd.npz.k9l8m7n6.tmp", ".0123abcd.npz.q1r2s3t4.tmp"]  # (perhaps another process's entry)
    foreign = [".notes.abcd1234.tmp", ".0123abcd.npz.tmp", ".a.npz.ab.cd.tmp", "0123abcd.npz.abcd1234.tmp",
               ".0123abcd.npz.ABCD1234.tmp", "notes.txt"]
    for name in (*dead, *young, *foreign):
        (tmp_path / name).write_text("left")
        if name not in young:
            os.utime(tmp_path / name, (hour_ago, hour_ago))
    half_an_hour_ago = time.time() - 1800  # (younger than an hour: kept)
    os.utime(tmp_path / young[1], (half_an_hour_ago, half_an_hour_ago))
    backend = dg.get_backend("bss2-emulator")
    calibration = backend.calibrate()
    assert backend.calibration_cache[0] == "stored"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*young, *foreign, f"{calibration.cache_key}.npz"])


def test_a_blank_delgrad_bss2_cache_is_refused_naming_the_variable(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DELGRAD_BSS2_CACHE", "  ")
    with pytest.raises(dg.InvalidValueError, match=r"\$DELGRAD_BSS2_CACHE is blank \('  '\).*or unset it"):
        dg.get_backend("bss2-emulator").calibrate()
    assert list(tmp_path.iterdir()) == []  # (no folder named by the blanks)

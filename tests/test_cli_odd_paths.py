"""The command line with odd paths and surroundings: paths that are not UTF-8, a current folder
that cannot be written, folder names longer than the file system allows, a standard output
closed early (`delgrad ... | head`), a broken plugin while --help lists the commands."""

import errno
import os
import pathlib
import subprocess
import sys

import pytest

from delgrad_core._atomic import atomic_write_text
from delgrad_core._errors import InvalidValueError
from delgrad_core.cli import main
from delgrad_core.testing import cli_runner
from delgrad_core.training import TrainingConfig

SWEEP = ["sweep", "--hidden", "5", "--delays", "none", "--seeds", "1", "--epochs", "1"]


def _delgrad(*args, cwd, env=None, **kwargs) -> subprocess.CompletedProcess:
    """`delgrad ARGS` in a new process, run in `cwd` (not the checkout, whose uncompiled
    delgrad_core `python -m` would import instead of the installed one)."""
    kwargs = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "cwd": cwd, **kwargs}
    return subprocess.run([sys.executable, "-m", "delgrad_core.cli", *args], env={**os.environ, **(env or {})},
                          timeout=120, **kwargs)


def test_slurm_script_of_a_path_that_is_not_utf8_holds_its_bytes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = os.fsdecode(b"swl\xe9")  # (as Python gets the argument: a surrogate escape for the byte)
    result = cli_runner().invoke(main, [*SWEEP, "--out", out, "--slurm-script", "s.sh"])
    assert result.exit_code == 0, result.output
    script = (tmp_path / "s.sh").read_bytes()
    assert b" --out 'swl\xe9' " in script


def test_slurm_script_of_a_non_ascii_path_under_the_c_locale(tmp_path):
    """(LC_ALL=C without UTF-8 mode: the file-system encoding is ASCII, é arrives as two escapes)"""
    result = _delgrad(*SWEEP, "--out", "sw\u00e9".encode(), "--slurm-script", "s.sh", cwd=tmp_path,
                      env={"LC_ALL": "C", "PYTHONUTF8": "0"})
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert b"Traceback" not in result.stderr
    assert b" --out 'sw\xc3\xa9' " in (tmp_path / "s.sh").read_bytes()


def test_other_text_files_stay_utf8(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "caf\u00e9 \u2014 \u00b5s")
    assert (tmp_path / "a.txt").read_bytes() == "caf\u00e9 \u2014 \u00b5s".encode("utf-8")
    atomic_write_text(tmp_path / "b.txt", "caf\u00e9", os_strings=True)
    assert (tmp_path / "b.txt").read_bytes() == os.fsencode("caf\u00e9")


def test_train_in_a_folder_that_cannot_be_written_asks_for_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mkdir = pathlib.Path.mkdir

    def read_only(self, *args, **kwargs):
        if not self.is_absolute():
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", read_only)
    result = cli_runner().invoke(main, ["train", "--epochs", "1", "--no-progress"])
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert "Errno" not in message
    assert "Error: the default output folder runs/train-" in message
    assert f"cannot be made in the current folder ({str(tmp_path)!r}: Read-only file system); give --out with a " \
           "folder to write the run to" in message


@pytest.mark.parametrize("command", [["train", "--epochs", "1"], SWEEP])
def test_out_with_a_folder_name_too_long_is_a_usage_error(tmp_path, command):
    for out in (tmp_path / ("x" * 300), tmp_path / ("x" * 300) / "run"):
        result = cli_runner().invoke(main, [*command, "--out", str(out)])
        assert result.exit_code == 2, result.output
        message = " ".join(result.stderr.split())
        assert "Errno" not in message and "x" * 120 not in message
        assert "Error: --out: the folder name 'xxxxx" in message
        assert "is 300 bytes long, more than the file system allows; choose a shorter name" in message


def test_a_name_too_long_to_show_is_shown_by_its_ends_and_the_count_of_characters_left_out():
    """`shortened` keeps a text of up to `limit` (100) characters whole; a longer one keeps its first
    50 and last 30, and says how many it leaves out."""
    from delgrad_core.cli._settings import shortened

    assert shortened("x" * 100) == "x" * 100
    assert shortened("a" * 60 + "b" * 50 + "c" * 41) == "a" * 50 + "...(71 characters)..." + "c" * 30
    assert len(shortened("y" * 101)) == 50 + len("...(21 characters)...") + 30


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs a /proc file system")
@pytest.mark.parametrize("out", ["/proc/self", "/proc/self/run"])
def test_out_on_a_file_system_that_takes_no_new_files_says_so(out):
    """(/proc answers "no such file" to a new file or folder: not a folder that others remove)"""
    result = cli_runner().invoke(main, ["train", "--epochs", "1", "--hidden", "3", "--out", out])
    assert result.exit_code == 1, result.output
    message = " ".join(result.stderr.split())
    assert f"Error: {out}: cannot make the folder or its lock file (No such file or directory, 5 times)" in message
    assert "in use by other processes" not in message


def test_output_into_a_closed_pipe_ends_quietly(tmp_path):
    reader, writer = os.pipe()
    os.close(reader)  # (as `| head -1` once head has its line)
    try:
        result = _delgrad("backends", cwd=tmp_path, stdout=writer)
    finally:
        os.close(writer)
    assert result.returncode in (0, 141)
    assert result.stderr == b""


def test_help_shows_a_broken_plugins_warning_as_a_warning_line(tmp_path):
    info = tmp_path / "broken_delgrad_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-delgrad-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[delgrad.backends]\nbroken = broken_delgrad_plugin_module\n")
    (tmp_path / "broken_delgrad_plugin_module.py").write_text("raise RuntimeError('boom')\n")
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    result = _delgrad("--help", cwd=tmp_path, env={"PYTHONPATH": path, "DELGRAD_STRICT_PLUGINS": "0"})
    assert result.returncode == 0, result.stderr
    stderr = result.stderr.decode()
    assert stderr == ("Warning: delgrad plugin 'broken' (broken_delgrad_plugin_module) from distribution "
                      "'broken-delgrad-plugin' 0.1 failed to load: RuntimeError: boom\n")
    assert b"Usage: " in result.stdout


def test_a_dataset_folder_whose_name_is_not_utf8_is_refused_before_a_run_records_it(tmp_path):
    """(metrics.json held it as a lone surrogate escape, "\\udce9", which JSON readers outside
    Python refuse; a run's own folder of such a name is fine: no file records it)"""
    folder = os.fsdecode(bytes(tmp_path) + b"/data\xe9")
    for options in ({"directory": folder}, {folder: 1}):
        with pytest.raises(InvalidValueError, match=r"dataset_options.* is not Unicode text \(a path whose name is "
                                                    "not UTF-8\\?\\)"):
            TrainingConfig(dataset="fashion_mnist", dataset_options=options)
    result = cli_runner().invoke(main, ["train", "--dataset", "fashion_mnist", "--dataset-option",
                                        f"directory={folder}", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "dataset_options.directory: " in result.output, result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", [["train", "--epochs", "1"], SWEEP])
def test_out_whose_whole_path_is_as_long_as_linux_allows_is_a_usage_error(tmp_path, command):
    """Linux's PATH_MAX (4096 bytes) counts the terminating NUL: a path of 4096 bytes, each folder
    name short enough, is already one byte too long."""
    names, left = [], 4096 - len(os.fsencode(str(tmp_path)))
    while left > 0:  # folder names of up to 200 bytes, each with its "/"
        names.append("x" * (min(left, 201) - 1))
        left -= len(names[-1]) + 1
    out = os.path.join(tmp_path, *names)
    assert len(os.fsencode(out)) == 4096 and all(0 < len(name) <= 200 for name in names)
    result = cli_runner().invoke(main, [*command, "--out", out])
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert "Error: --out: the path '" in message and "is 4096 bytes long, more than the file system allows; choose " \
        "a shorter one" in message, message

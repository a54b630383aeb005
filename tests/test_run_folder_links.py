"""Run and sweep folders whose files are symbolic links (a copy made with `cp -rs`), and a folder
path that is a link to nothing: refused, and the files the links point to never written."""

import re
import pytest
from _run_folders import TRAIN, file_digests
from delgrad_core.testing import cli_runner

from delgrad_core import RunFolderError
from delgrad_core.cli import main
from delgrad_core.training._run_folder import RunFolder


def _linked_copy(original, copy) -> None:
    """What `cp -rs ORIGINAL COPY` makes: the folder, with a link to each of its files."""
    copy.mkdir()
    for entry in original.iterdir():
        (copy / entry.name).symlink_to(entry)


def test_resuming_a_copy_made_of_links_refuses_and_leaves_the_original_alone(finished_run, tmp_path):
    before = file_digests(finished_run)
    copy = tmp_path / "copy"
    _linked_copy(finished_run, copy)
    result = cli_runner().invoke(main, [*TRAIN, "--epochs", "3", "--out", str(copy), "--resume"])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    # (", and so are ..." read as if the others pointed to the first one's file too)
    assert re.search(rf"{re.escape(str(copy))}: checkpoint.npz is a symbolic link to "
                     rf"{re.escape(str(finished_run / 'checkpoint.npz'))}; [\w., ]+ are symbolic links too; ",
                     " ".join(result.output.split())), result.output
    assert "history.jsonl" in result.output and "copy a folder with cp -r, not as links (cp -rs)" in result.output
    assert file_digests(finished_run) == before
    assert all((copy / name).is_symlink() for name in before)


def test_one_linked_run_file_is_refused_by_name_for_a_resume_from_python(finished_run, tmp_path):
    """(the history was appended through the link: opened with "a", which follows it)"""
    copy = tmp_path / "copy"
    copy.mkdir()
    for entry in finished_run.iterdir():
        if entry.name != "history.jsonl":
            (copy / entry.name).write_bytes(entry.read_bytes())
    (copy / "history.jsonl").symlink_to(finished_run / "history.jsonl")
    before = (finished_run / "history.jsonl").read_bytes()
    with pytest.raises(RunFolderError,
                       match=f"history.jsonl is a symbolic link to {finished_run / 'history.jsonl'}; writing there "
                             "would change the file it points to"):
        with RunFolder(copy).claim(resume=True):
            pass
    assert (finished_run / "history.jsonl").read_bytes() == before


def test_a_copy_made_of_real_files_resumes(finished_run, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for entry in finished_run.iterdir():
        (copy / entry.name).write_bytes(entry.read_bytes())
    with RunFolder(copy).claim(resume=True) as claimed:
        assert claimed.finished_metrics() is not None


def test_a_folder_given_as_a_link_to_a_folder_is_used(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with RunFolder(tmp_path / "link").claim(resume=False) as claimed:
        claimed.append_history({"epoch": 1})
    assert (tmp_path / "real" / "history.jsonl").is_file()


@pytest.mark.parametrize("target", ["/nonexistent/dir", "loop"])
def test_a_dangling_link_given_as_the_folder_is_named_as_such(tmp_path, target):
    (tmp_path / "dangling").symlink_to(target if target.startswith("/") else tmp_path / target)
    if target == "loop":
        (tmp_path / "loop").symlink_to(tmp_path / "dangling")
    result = cli_runner().invoke(main, [*TRAIN, "--epochs", "1", "--out", str(tmp_path / "dangling")])
    assert result.exit_code == 1 and "File exists" not in result.output, result.output
    shown = target if target.startswith("/") else tmp_path / target
    assert f"{tmp_path / 'dangling'}: a symbolic link to {shown}, which does not exist (or is a loop of links); " \
           "make the folder it points to, remove the link, or choose another folder" in result.output, result.output


def test_a_folder_inside_a_dangling_link_names_the_link(tmp_path):
    (tmp_path / "dangling").symlink_to("/nonexistent/dir")
    with pytest.raises(RunFolderError, match=f"{tmp_path / 'dangling' / 'run'}: {tmp_path / 'dangling'} is a "
                                             "symbolic link to /nonexistent/dir, which does not exist"):
        with RunFolder(tmp_path / "dangling" / "run").claim(resume=False):
            pass


def test_a_sweep_folder_whose_results_are_links_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere.csv"
    elsewhere.write_text("another sweep's table\n")
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "sweep.csv").symlink_to(elsewhere)
    result = cli_runner().invoke(main, ["sweep", "--hidden", "4", "--delays", "none", "--seeds", "1", "--epochs",
                                        "1", "--jobs", "1", "--out", str(tmp_path / "sweep")])
    assert result.exit_code == 1, result.output
    assert f"sweep.csv is a symbolic link to {elsewhere}" in result.output, result.output
    assert elsewhere.read_text() == "another sweep's table\n"


@pytest.mark.parametrize(("linked", "first", "others"), [
    (["checkpoint.npz", "history.jsonl"], "checkpoint.npz", "history.jsonl is a symbolic link too"),
    (["checkpoint.npz", "history.jsonl", "metrics.json", "network.npz", ".lock", "a.png", "b.png", "c.png"], "a.png",
     "b.png, c.png, checkpoint.npz, history.jsonl, metrics.json and 2 more are symbolic links too"),
], ids=["two", "eight"])
def test_a_folder_of_linked_run_files_names_the_first_links_and_counts_the_rest(tmp_path, linked, first, others):
    """Linked run files are refused naming the first link (hidden names last) and the next five, counting the
    rest."""
    original = tmp_path / "original"
    original.mkdir()
    for name in linked:
        (original / name).write_text("")
    copy = tmp_path / "copy"
    _linked_copy(original, copy)
    with pytest.raises(RunFolderError) as refused:
        with RunFolder(copy).claim(resume=True):
            pass
    assert str(refused.value).startswith(f"{copy}: {first} is a symbolic link to {original / first}; {others}; writing "
                                         "there would change the files they point to, but")


def test_a_new_folder_inside_a_link_to_a_folder_is_made_where_the_link_points(tmp_path):
    """A link to a folder on the way to a new run folder is followed (only a link to nothing is refused)."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with RunFolder(tmp_path / "link" / "run").claim(resume=False) as claimed:
        claimed.append_history({"epoch": 1})
    assert (tmp_path / "real" / "run" / "history.jsonl").is_file()


def test_a_link_on_the_folders_path_re_pointed_meanwhile_gets_no_write(tmp_path):
    """(a sweep through a "current" link re-pointed at an earlier, finished sweep went on writing
    there: its runs' histories got epochs twice, their networks and metrics were replaced, exit 0)"""
    from delgrad_core._atomic import atomic_write_text
    from delgrad_core.training._run_folder import folder_lock

    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "run").mkdir(parents=True)
    (tmp_path / "current").symlink_to("a")
    run = tmp_path / "current" / "run"
    with folder_lock(run):
        atomic_write_text(run / "before.txt", "written")
        (tmp_path / "current").unlink()
        (tmp_path / "current").symlink_to("b")
        for write in (lambda: atomic_write_text(run / "after.txt", "lost"),
                      lambda: RunFolder(run).append_history({"epoch": 1})):
            with pytest.raises(RunFolderError, match=f"{run}: the folder was moved, removed or replaced while this "
                                                     "process wrote in it"):
                write()
    assert list((tmp_path / "b" / "run").iterdir()) == [] and (tmp_path / "a" / "run" / "before.txt").exists()

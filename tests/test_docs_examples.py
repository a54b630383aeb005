"""The documentation's examples work as written: its Python examples run (long training shortened),
and every option of a `delgrad` command line in a code block is one the command takes."""

import itertools
import pathlib
import re

import numpy as np
import pytest

from delgrad_core.cli import main
from delgrad_core.testing import cli_runner

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCUMENTS = ["README.md", *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "docs").glob("*.md")),
             "backends/bss2/README.md", "backends/hil/README.md", "backends/reference/README.md",
             "plugins/example/README.md", "benchmarks/README.md"]


def _code_blocks(document: str) -> list[tuple[str, str]]:
    """(language, text) of each fenced code block of `document`, indented ones included."""
    blocks, language, lines = [], None, []
    for line in (ROOT / document).read_text().splitlines():
        fence = re.fullmatch(r"\s*```(\w*)\s*", line)
        if fence and language is None:
            language, lines = fence.group(1), []
        elif fence:
            blocks.append((language, "\n".join(lines)))
            language = None
        elif language is not None:
            lines.append(line)
    return blocks


def _python_example(document: str, first_line: str) -> str:
    """The one Python block of `document` that starts with `first_line`."""
    (block,) = [text for language, text in _code_blocks(document)
                if language == "python" and text.lstrip().startswith(first_line)]
    return block


def _command_lines() -> list[tuple[str, str]]:
    """(document, command) of every `delgrad ...` line of a shell block (continuations joined,
    comments dropped)."""
    found = []
    for document in DOCUMENTS:
        for language, text in _code_blocks(document):
            if language not in ("", "bash", "sh", "console"):
                continue
            for line in text.replace("\\\n", " ").splitlines():
                line = re.sub(r"^\s*\$\s*", "", line.split(" #")[0]).strip()
                if line.startswith("delgrad "):
                    found.append((document, line))
    return found


def _help_of(words: list[str]) -> tuple[list[str], str]:
    """The longest leading run of `words` that names a command (the rest are its arguments), and
    its --help text; ([], "") if none does."""
    command = list(itertools.takewhile(lambda word: re.fullmatch(r"[a-z][a-z-]*", word), words))
    while command:
        result = cli_runner().invoke(main, [*command, "--help"])
        if result.exit_code == 0:
            return command, result.output
        command.pop()
    return [], ""


COMMAND_LINES = _command_lines()


def test_the_documents_hold_command_lines_to_check():
    """(the parser finds them: a test of none would pass whatever the documents say)"""
    documents = {document for document, _ in COMMAND_LINES}
    assert len(COMMAND_LINES) >= 40 and {"README.md", "docs/bss2.md", "docs/hil.md"} <= documents


@pytest.mark.parametrize("document, line", COMMAND_LINES, ids=lambda value: value[:60])
def test_every_option_of_a_documented_command_is_one_the_command_takes(document, line):
    command, help_text = _help_of(line.split()[1:])
    assert command, f"{document}: {line!r} names no delgrad command"
    unknown = [option for option in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", line)
               if option != "--help" and option not in help_text]
    assert not unknown, f"{document}: `delgrad {' '.join(command)}` takes no {', '.join(unknown)} ({line!r})"


def test_the_readme_core_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names = {}
    exec(compile(_python_example("README.md", "import numpy as np"), "README.md", "exec"), names)
    assert [grad.weights.shape for grad in names["grads"].layers] == [(4, 30), (30, 3)]
    assert names["result"].layer_spike_times[-1].shape == (150, 3) and (tmp_path / "net.npz").is_file()


def test_the_training_guide_example_trains_and_resumes(tmp_path, monkeypatch):
    """docs/training.md's Trainer example, 300 + 100 epochs shortened to 1 + 1."""
    monkeypatch.chdir(tmp_path)
    example = _python_example("docs/training.md", "from delgrad_core.training import")
    shortened = example.replace("epochs=300", "epochs=1").replace("epochs=400", "epochs=2")
    assert "epochs=1)" in shortened and "epochs=2)" in shortened
    exec(compile(shortened, "docs/training.md", "exec"), {})
    history = (tmp_path / "runs" / "ax30" / "history.jsonl").read_text().splitlines()
    assert len(history) == 2 and (tmp_path / "runs" / "ax30" / "network.npz").is_file()


def test_the_bss2_example_runs_with_the_network_and_inputs_it_describes():
    pytest.importorskip("delgrad_bss2")
    import delgrad_core as dg

    names = {"network": dg.Network.feedforward([20, 30, 3], delay_kind="axonal",  # (as its comment says)
                                               neuron=dg.NeuronParameters(threshold=2.6, tau_m=1.0, tau_s=1.0)),
             "inputs": np.repeat(np.random.default_rng(0).uniform(0.15, 2.0, (10, 4)), 5, axis=1)}
    exec(compile(_python_example("docs/bss2.md", "import delgrad_core as dg"), "docs/bss2.md", "exec"), names)
    assert names["result"].metadata["chip_seconds"] > 0 and names["result"].arrival_times is not None


def test_the_nir_example_round_trips_a_network(tmp_path, monkeypatch):
    pytest.importorskip("nir")
    import delgrad_core as dg

    monkeypatch.chdir(tmp_path)
    given = dg.Network.feedforward([4, 5, 3], delay_kind="axonal", seed=1, delay_value=0.3)
    names = {"network": given}
    exec(compile(_python_example("docs/nir.md", "from delgrad_core.nir import"), "docs/nir.md", "exec"), names)
    for before, after in zip(given.layers, names["network"].layers):
        np.testing.assert_allclose(after.projection.weights, before.projection.weights, rtol=1e-12)
        np.testing.assert_allclose(after.projection.delays, before.projection.delays, rtol=1e-12)
    assert (tmp_path / "net.nir").is_file()

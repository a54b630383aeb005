"""PNG plots of a training run: learning curves, output spike times per class, the confusion
matrix, a decision map for 2-d tasks, learned delays.

Needs matplotlib (the ``plot`` extra); `plot_run` says so instead of failing the run.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from delgrad_core._atomic import atomic_write

__all__ = ["plain_text", "plot_run", "plots_available", "pyplot", "save_figure", "warn_no_plots", "why_no_plots"]

_NOT_INSTALLED = "matplotlib is not installed"


def why_no_plots() -> str | None:
    """Why no plots can be drawn (matplotlib is not installed, or could not be loaded, e.g. for
    lack of memory); None if they can."""
    try:
        pyplot()
    except (ImportError, OSError, MemoryError, SystemError) as exc:  # (e.g. its libraries could not be mapped)
        if isinstance(exc, ModuleNotFoundError) and exc.name == "matplotlib":
            return _NOT_INSTALLED
        return f"matplotlib could not be loaded ({type(exc).__name__}: {exc})"
    return None


def plots_available() -> bool:
    return why_no_plots() is None


def warn_no_plots(reason: str, stacklevel: int = 1) -> None:
    """The warning that no plots are written, and why (`delgrad train` and `delgrad sweep` say it
    the same way)."""
    advice = " (pip install 'delgrad[plot]')" if reason == _NOT_INSTALLED else ""
    warnings.warn(f"{reason}: no plots written{advice}", stacklevel=stacklevel + 1)


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plain_text(text) -> str:
    """`text` (a class, dataset or layer name) as matplotlib draws it letter for letter: two `$`
    in it began mathtext, drawn as formulas or, unparsable, failing the plot and the run."""
    return str(text).replace("$", r"\$")


def save_figure(fig, path: Path) -> None:
    """Write `fig` as PNG atomically (a kill never leaves a truncated image) and close it."""
    import matplotlib.pyplot as plt

    try:
        atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=120))
    finally:
        plt.close(fig)


def _learning_curves(plt, history: list[dict], path: Path) -> None:
    epochs = [m["epoch"] for m in history]
    style = {"marker": "o"} if len(epochs) == 1 else {}  # (a line of one point is not drawn)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [m["train_loss"] for m in history], label="train", **style)
    ax_loss.plot(epochs, [m["validation_loss"] for m in history], label="validation", **style)
    positive = all(m[key] > 0 for m in history for key in ("train_loss", "validation_loss"))
    ax_loss.set(xlabel="epoch", ylabel="loss", yscale="log" if positive else "linear", title="Loss")
    ax_acc.plot(epochs, [100 * m["train_accuracy"] for m in history], label="train", **style)
    ax_acc.plot(epochs, [100 * m["validation_accuracy"] for m in history], label="validation", **style)
    ax_acc.set(xlabel="epoch", ylabel="accuracy [%]", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def _bins(values: np.ndarray, count: int):
    """`count` histogram bins over the finite `values` (10 default bins if there are none); one
    bin around them where they lie too close together for `count` distinct edges (all equal, or
    equal to within rounding at a large magnitude, e.g. delays of 1e16: matplotlib refused them,
    and the run failed after its metrics were written)."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return 10
    edges = np.linspace(finite.min(), finite.max(), count + 1)
    if np.all(np.diff(edges) > 0):
        return edges
    middle = float(finite.min())
    half = max(abs(middle) * 1e-6, 0.5)
    return np.array([middle - half, middle + half])


def _silent_note(times: np.ndarray) -> str:
    """" (N of M silent)" for a histogram's legend ("" if every sample spiked): silent samples
    have no bar, and a histogram of only silent ones is empty."""
    silent = int(np.sum(~np.isfinite(times)))
    return f" ({silent} of {times.size} silent)" if silent else ""


def _count_axis(ax) -> None:
    """A histogram's count axis: whole numbers from 0 (one with no bars, of silent samples only,
    ran from -0.06 to 0.06)."""
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, max(ax.get_ylim()[1], 1))


_MAX_CLASS_PANELS = 5  # beyond, one panel for all classes (a panel per class and neuron grows as n^2: 10
# classes took 20 s to draw, in a figure 40 inches wide)


def _spike_time_distributions(plt, output_times: np.ndarray, labels: np.ndarray, class_names, path: Path) -> None:
    n_classes = output_times.shape[1]
    if n_classes > _MAX_CLASS_PANELS:
        _label_against_others(plt, output_times, labels, path)
        return
    fig, axes = plt.subplots(1, n_classes, figsize=(4 * n_classes, 3.5), sharey=True, squeeze=False)
    bins = _bins(output_times, 39)
    for label, ax in enumerate(axes[0]):
        rows = output_times[labels == label]
        for neuron in range(n_classes):
            times = rows[:, neuron]
            ax.hist(times[np.isfinite(times)], bins=bins, alpha=0.6,
                    label=f"output {plain_text(class_names[neuron])}{_silent_note(times)}")
        ax.set(title=f"samples of class {plain_text(class_names[label])}", xlabel="spike time [tau_s]")
    axes[0][0].set_ylabel("count")
    _count_axis(axes[0][0])  # (shared: once all panels are drawn)
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def _label_against_others(plt, output_times: np.ndarray, labels: np.ndarray, path: Path) -> None:
    """Every sample's spike time of its label's output neuron, and the earliest of the others."""
    rows = np.arange(len(labels))
    own = output_times[rows, labels]
    others = output_times.copy()
    others[rows, labels] = np.inf
    earliest_other = others.min(axis=1)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = _bins(np.concatenate([own, earliest_other]), 39)
    for times, name in ((own, "the label's output"), (earliest_other, "the earliest other output")):
        ax.hist(times[np.isfinite(times)], bins=bins, alpha=0.6, label=f"{name}{_silent_note(times)}")
    ax.set(title=f"all {output_times.shape[1]} classes", xlabel="spike time [tau_s]", ylabel="count")
    _count_axis(ax)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def _delays(plt, network, path: Path) -> None:
    layers = [(layer.population.name, layer.projection) for layer in network.layers
              if layer.projection.delays is not None]
    fig, axes = plt.subplots(1, len(layers), figsize=(5 * len(layers), 3.5), squeeze=False)
    for ax, (name, projection) in zip(axes[0], layers):
        ax.hist(projection.delays.ravel(), bins=_bins(projection.delays.ravel(), 30))
        ax.set(title=f"{projection.delay_kind.value} delays into {plain_text(name)}", xlabel="delay [tau_s]",
               ylabel="count")
    fig.tight_layout()
    save_figure(fig, path)


_MAX_CONFUSION_COUNTS = 20  # classes beyond which the counts are a colour bar, not a number per cell, and the
# figure grows no more (it grew as n and its numbers as n^2: 100 classes took 31 s, 600 ran out of memory)
_MAX_CONFUSION_NAMES = 60  # classes beyond which the axes show class numbers, not every name


def _confusion(plt, predictions: np.ndarray, labels: np.ndarray, class_names, path: Path) -> None:
    n = len(class_names)
    counts = np.zeros((n, n + 1), dtype=int)  # last column: no output spike
    np.add.at(counts, (labels, np.where(predictions < 0, n, predictions)), 1)
    size = min(n, _MAX_CONFUSION_COUNTS)
    fig, ax = plt.subplots(figsize=(1.2 * size + 3, 0.9 * size + 2))
    image = ax.imshow(counts, cmap="Blues", aspect="auto" if n > size else "equal")
    if n > size:
        fig.colorbar(image, ax=ax, label="samples")
    else:
        for (row, column), count in np.ndenumerate(counts):
            ax.text(column, row, str(count), ha="center", va="center",
                    color="white" if count > counts.max() / 2 else "black", fontsize=8)
    if n <= _MAX_CONFUSION_NAMES:
        ax.set_xticks(range(n + 1), [*map(plain_text, class_names), "none"], rotation=45, ha="right")
        ax.set_yticks(range(n), list(map(plain_text, class_names)))
    ax.set(xlabel="predicted (first output spike)", ylabel="true class",
           title=f"test accuracy {100 * np.mean(predictions == labels):.1f} %")
    fig.tight_layout()
    save_figure(fig, path)


def _decision_map(plt, plane, features: np.ndarray, predictions: np.ndarray, labels: np.ndarray, class_names,
                  path: Path) -> None:
    from matplotlib.colors import ListedColormap

    grid_x, grid_y, predicted = plane
    n = len(class_names)
    # (tab10 repeats its last colour beyond 10 classes)
    colours = plt.get_cmap("tab10")(np.arange(n)) if n <= 10 else plt.get_cmap("turbo")(np.linspace(0, 1, n))
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.imshow(np.where(predicted < 0, np.nan, predicted), origin="lower", extent=(0, 1, 0, 1), vmin=-0.5,
              vmax=n - 0.5, cmap=ListedColormap(colours), alpha=0.35, interpolation="nearest")
    wrong = predictions != labels
    for label in range(n):
        right = (labels == label) & ~wrong
        ax.scatter(features[right, 0], features[right, 1], s=6, color=colours[label],
                   label=plain_text(class_names[label]))
    ax.scatter(features[wrong, 0], features[wrong, 1], s=30, marker="x", color="black",
               label=f"wrong ({int(wrong.sum())})")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="x", ylabel="y", title="predicted class (shade), test points")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    save_figure(fig, path)


def plot_run(out_dir, history: list[dict], network, test_output_times, test_labels, class_names,
             test_features=None, plane=None) -> list[Path]:
    """Write learning_curves.png, spike_times.png, confusion.png, (with a `plane` from
    `Trainer.decision_plane`) decision_map.png and (with delays) delays.png into `out_dir`."""
    from delgrad_core._losses import first_spike_prediction

    reason = why_no_plots()
    if reason:
        warn_no_plots(reason)
        return []
    plt = pyplot()
    out_dir = Path(out_dir)
    output_times, labels = np.asarray(test_output_times), np.asarray(test_labels)
    predictions = first_spike_prediction(output_times)
    written = [out_dir / "learning_curves.png", out_dir / "spike_times.png", out_dir / "confusion.png"]
    _learning_curves(plt, history, written[0])
    _spike_time_distributions(plt, output_times, labels, class_names, written[1])
    _confusion(plt, predictions, labels, class_names, written[2])
    if plane is not None and test_features is not None:
        written.append(out_dir / "decision_map.png")
        _decision_map(plt, plane, np.asarray(test_features), predictions, labels, class_names, written[-1])
    if any(layer.projection.delays is not None for layer in network.layers):
        written.append(out_dir / "delays.png")
        _delays(plt, network, written[-1])
    return written

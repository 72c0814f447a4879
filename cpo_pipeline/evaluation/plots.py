"""The report's picture: per-disease accuracy with its intervals, and the probes, per model."""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np

from cpo_pipeline.evaluation.classification import AVERAGE_FIVE, PAPER_FIVE

_PROBES = ("flip rate after a synonym swap", "reward accuracy", "mean reward margin")


def accuracy_png(figures: Mapping, dpi: int = 80) -> bytes:
    """Left: accuracy (with 95% CI) on the paper's five findings and their average, a bar per
    model. Right: the synonym-swap flip rate, reward accuracy and mean reward margin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [*PAPER_FIVE, AVERAGE_FIVE]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4), width_ratios=(3, 1.4))
    width = 0.8 / max(len(figures), 1)
    for index, (name, figure) in enumerate(figures.items()):
        table = figure.accuracy.set_index("label").loc[labels]
        values = table["accuracy"].to_numpy(dtype=float)
        errors = np.abs(np.vstack([values - table["ci_low"].to_numpy(dtype=float),
                                   table["ci_high"].to_numpy(dtype=float) - values]))
        x = np.arange(len(labels)) + index * width
        left.bar(x, values, width, yerr=errors, capsize=2, label=name)
        probes = [figure.probes.get(probe) for probe in _PROBES]
        right.bar(np.arange(len(_PROBES)) + index * width,
                  [np.nan if p is None else p for p in probes], width, label=name)
    left.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, rotation=20, fontsize=8)
    left.set_ylim(0, 1)
    left.set_ylabel("accuracy (95% CI, patients resampled)")
    left.legend(fontsize=7)
    right.set_xticks(np.arange(len(_PROBES)) + 0.4 - width / 2,
                     ["flip rate", "reward acc.", "reward margin"], fontsize=8)
    right.axhline(0, color="grey", linewidth=0.5)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()


def staged_png(matrices: Mapping, initial, dpi: int = 80) -> bytes:
    """Staged tuning: one panel per test stage, its average-five accuracy after each training
    stage, a line per method, the stage-0 SFT model dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test_stages = list(initial.index)
    fig, axes = plt.subplots(1, len(test_stages), figsize=(4 * len(test_stages), 3.4),
                             sharey=True, squeeze=False)
    for axis, test_stage in zip(axes[0], test_stages, strict=True):
        for name, matrix in matrices.items():
            axis.plot(matrix.index, matrix[test_stage], marker="o", label=name)
        axis.axhline(initial[test_stage], color="grey", linestyle="--", label="sft (stage 0)")
        axis.set_title(f"test studies of stage {test_stage}", fontsize=9)
        axis.set_xlabel("after training stage")
        axis.set_xticks(list(next(iter(matrices.values())).index) if matrices else [0])
    axes[0][0].set_ylabel(f"{AVERAGE_FIVE} accuracy")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()

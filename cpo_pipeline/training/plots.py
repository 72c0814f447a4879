"""Training curves as a PNG: loss, and for DPO the reward margin and accuracy, per step.

Drawn from the trainer's log history (`log_history.jsonl` beside the model) with matplotlib
alone, so the Dagster process draws them without importing torch.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

CURVES = {
    "loss": "loss",
    "rewards/margins": "reward margin",
    "rewards/accuracies": "reward accuracy",
}


def curve(history: Sequence[dict], key: str) -> tuple[list[int], list[float]]:
    """The (step, value) points of one logged metric; evaluation and summary rows left out."""
    points = [(row["step"], float(row[key])) for row in history
              if key in row and "step" in row and not any(k.startswith(("eval_", "final_"))
                                                           for k in row)]
    return [step for step, _ in points], [value for _, value in points]


def training_curves_png(history: Sequence[dict], title: str) -> bytes | None:
    """One panel per logged curve of `CURVES`; None when nothing was logged."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    present = [(key, label) for key, label in CURVES.items() if curve(history, key)[0]]
    if not present:
        return None
    figure, axes = plt.subplots(1, len(present), figsize=(4 * len(present), 3), squeeze=False)
    for axis, (key, label) in zip(axes[0], present, strict=True):
        steps, values = curve(history, key)
        axis.plot(steps, values, marker="." if len(steps) < 50 else None)
        axis.set_xlabel("step")
        axis.set_title(label)
        if key == "rewards/accuracies":
            axis.axhline(0.5, color="grey", linestyle="--", linewidth=0.8)
            axis.set_ylim(-0.05, 1.05)
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return buffer.getvalue()

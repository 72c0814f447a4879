"""The figures of staged (non-stationary) tuning: each method's model after each training stage,
scored on every stage's test studies.

`accuracy[method][k][j]` is the average-five top-1 accuracy after training stage k on the test
studies of stage j (diagonal: the stage just learned; below it: earlier stages; above it: stages
not seen yet). From it, per method:
- forgetting (Chaudhry et al. 2018): for each earlier stage j, the best accuracy on j at any
  stage before the last minus the accuracy on j after the last, averaged over j < K-1;
- backward transfer (Lopez-Paz & Ranzato 2017): accuracy on j after the last stage minus right
  after learning j, averaged over j < K-1 (negative: forgetting);
- the drift probes after each stage (synonym-swap flips, preference reward accuracy, whether the
  answer follows the factual or the counterfactual thinking).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from cpo_pipeline.evaluation.classification import (
    ANSWER_LABELS,
    AVERAGE_FIVE,
    EXACT,
    PAPER_FIVE,
    accuracy_table,
)
from cpo_pipeline.radiology.chexpert import NO_FINDING

# The probes whose trajectory across stages is reported (from `report.model_figures`).
TRAJECTORY_PROBES = (
    "flip rate after a synonym swap",
    "reward accuracy",
    "mean reward margin",
    "answer follows the factual thinking",
    "answer follows the counterfactual thinking",
)


def accuracy_by_stage(answers: pd.DataFrame, reference: pd.DataFrame, stages: Sequence[int],
                      *, resamples: int, seed: int) -> pd.DataFrame:
    """One model's accuracy on each test stage's studies: rows (test stage, label) with the
    patient-bootstrap interval; `answers`, `reference` and `stages` have one row per study."""
    stages = np.asarray(stages)
    rows = []
    for stage in sorted(set(stages.tolist())):
        mask = stages == stage
        table = accuracy_table(answers[mask].reset_index(drop=True),
                               reference[mask].reset_index(drop=True),
                               answers.loc[mask, "subject_id"].to_numpy(),
                               resamples=resamples, seed=seed)
        rows.append(table.assign(test_stage=stage))
    return pd.concat(rows, ignore_index=True)


def no_finding_floor(reference: pd.DataFrame, stages: Sequence[int], subject_ids: Sequence,
                     *, resamples: int, seed: int) -> pd.DataFrame:
    """What answering "No Finding" for every study scores on each test stage, as
    `accuracy_by_stage` rows: the floor a model must clear to show it reads the image. A
    constant negative answer's average-five accuracy is one minus the diseases' prevalence,
    so it moves with each stage's label mix, and a model stuck on it looks strong there."""
    answers = pd.DataFrame({label: label == NO_FINDING for label in ANSWER_LABELS},
                           index=range(len(reference)))
    answers["parsed"] = True
    answers["subject_id"] = np.asarray(subject_ids)
    return accuracy_by_stage(answers, reference, stages, resamples=resamples, seed=seed)


def stage_matrix(per_stage: Mapping[int, pd.DataFrame], label: str = AVERAGE_FIVE
                 ) -> pd.DataFrame:
    """Rows: the training stage after which the model was scored; columns: the test stage;
    values: `label`'s accuracy. `per_stage` maps a training stage to `accuracy_by_stage`."""
    return pd.DataFrame({
        trained: table[table["label"] == label].set_index("test_stage")["accuracy"]
        for trained, table in sorted(per_stage.items())}).T.rename_axis(
            index="after stage", columns="test stage")


def forgetting(matrix: pd.DataFrame) -> float | None:
    """Mean over earlier test stages of (best accuracy before the last stage - accuracy after
    the last); None with a single stage."""
    last = matrix.index.max()
    earlier = [j for j in matrix.columns if j < last]
    if not earlier:
        return None
    drops = [matrix.loc[[k for k in matrix.index if j <= k < last], j].max()
             - matrix.loc[last, j] for j in earlier]
    return float(np.mean(drops))


def backward_transfer(matrix: pd.DataFrame) -> float | None:
    """Mean over earlier test stages of (accuracy after the last stage - right after learning
    it); None with a single stage."""
    last = matrix.index.max()
    earlier = [j for j in matrix.columns if j < last and j in matrix.index]
    if not earlier:
        return None
    return float(np.mean([matrix.loc[last, j] - matrix.loc[j, j] for j in earlier]))


def _percent(value: float | None) -> str:
    return "n/a" if value is None or np.isnan(value) else f"{100 * value:.1f}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None or np.isnan(value) else f"{100 * value:+.1f}"


_FLOOR = "every answer 'No Finding' (the floor)"


def _row(name: object, values: pd.Series, stages: Sequence[int]) -> str:
    return (f"| {name} | " + " | ".join(_percent(values.get(j)) for j in stages)
            + f" | {_percent(float(values.mean()))} |")


def staged_markdown(matrices: Mapping[str, pd.DataFrame], initial: pd.Series,
                    probes: Mapping[str, Mapping[int, Mapping[str, float | None]]],
                    *, reference: str, test_studies: Mapping[int, int],
                    floor: pd.DataFrame, exact: Mapping[str, pd.DataFrame]) -> str:
    """The staged report: per method the accuracy matrix, forgetting and backward transfer,
    the exact-answer matrices, then the probes' trajectory. `initial`: the stage-0 SFT model's
    accuracy per test stage; `floor`: `no_finding_floor`'s accuracy (rows: label, columns:
    test stage); `exact`: per method (and 'sft (stage 0)') the exact-answer `stage_matrix`."""
    stages = sorted(test_studies)
    header = "| after stage | " + " | ".join(
        f"test stage {j} (n={test_studies[j]})" for j in stages) + " | mean |"
    rule = "|---|" + "---|" * (len(stages) + 1)
    lines = [f"# Staged tuning: {len(stages)} stages, reference = {reference}", "",
             (f"Average-five accuracy % ({', '.join(PAPER_FIVE)}) after each training stage on "
             "every stage's test studies. Forgetting: best accuracy on an earlier stage before "
             "the last training stage minus after it (mean over earlier stages; lower is "
             "better). Backward transfer: after the last stage minus right after learning the "
             "stage (negative means forgetting)."), "",
             "## Starting point: SFT on stage 0", "", header, rule,
             _row("sft (stage 0)", initial, stages),
             _row(_FLOOR, floor.loc[AVERAGE_FIVE], stages),
             ""]
    summary = ["## Summary", "", "| method | final mean | forgetting | backward transfer |",
               "|---|---|---|---|"]
    for method, matrix in matrices.items():
        lines += [f"## {method}", "", header, rule]
        lines += [_row(trained, row, stages) for trained, row in matrix.iterrows()]
        lines.append("")
        final = float(matrix.iloc[-1].mean())
        summary.append(f"| {method} | {_percent(final)} | {_signed(forgetting(matrix))} | "
                       f"{_signed(backward_transfer(matrix))} |")
    lines += [*summary, "", "## Exact answer after each stage", "",
              ("Exact-answer accuracy %: the answer line names exactly the reference's labels. "
               "It separates a model that reads the image from one that answers the label mix "
               "better than the average five does."), "",
              "| model | " + header[len("| after stage | "):], rule,
              _row(_FLOOR, floor.loc[EXACT], stages)]
    for name, matrix in exact.items():
        lines += [_row(f"{name}, after {trained}" if name in matrices else name, row, stages)
                  for trained, row in matrix.iterrows()]
    lines += ["", "## Drift probes after each stage", "",
              "| method | after stage | " + " | ".join(TRAJECTORY_PROBES) + " |",
              "|---|---|" + "---|" * len(TRAJECTORY_PROBES)]
    for method, by_stage in probes.items():
        for trained, values in sorted(by_stage.items()):
            cells = [_percent(values.get(name)) if name != "mean reward margin"
                     else ("n/a" if values.get(name) is None else f"{values[name]:.3f}")
                     for name in TRAJECTORY_PROBES]
            lines.append(f"| {method} | {trained} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

"""The figures of staged (non-stationary) tuning: each method's model after each training stage,
scored on every stage's test studies.

`accuracy[method][k][j]` is the average-five top-1 accuracy after training stage k on the test
studies of stage j (diagonal: the stage just learned; below it: earlier stages; above it: stages
not seen yet); the same matrices hold the primary figures (answer-line macro-F1 over the five,
exact answers, the parse rate), which a constant answer cannot pass. From each, per method:
- forgetting (Chaudhry et al. 2018): for each earlier stage j, the best accuracy on j at any
  stage before the last minus the accuracy on j after the last, averaged over j < K-1;
- backward transfer (Lopez-Paz & Ranzato 2017): accuracy on j after the last stage minus right
  after learning j, averaged over j < K-1 (negative: forgetting);
- the drift probes after each stage (synonym-swap flips, preference reward accuracy, whether the
  answer follows the factual or the counterfactual thinking).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cpo_pipeline.evaluation.classification import (
    AVERAGE_FIVE,
    EXACT,
    FLOOR,
    MACRO_F1_FIVE,
    PAPER_FIVE,
    PARSE_RATE,
    accuracy_table,
    answer_metrics,
    no_finding_answers,
    reference_answers,
)

# The stage-0 SFT model every method starts from, as the staged manifests name it.
INITIAL = "sft (stage 0)"
# The probes whose trajectory across stages is reported (from `report.model_figures`).
TRAJECTORY_PROBES = (
    "flip rate after a synonym swap",
    "reward accuracy",
    "mean reward margin",
    "answer follows the factual thinking",
    "answer follows the counterfactual thinking",
)
# The figures besides the average five that get a matrix per method, and their report titles.
MATRIX_FIGURES = {
    MACRO_F1_FIVE: ("Answer-line macro-F1 over the five % (the primary figure: a constant "
                    "answer scores 0)"),
    EXACT: ("Exact-answer accuracy %: the answer line names exactly the reference's labels. "
            "It separates a model that reads the image from one that answers the label mix "
            "better than the average five does."),
    PARSE_RATE: "Parse rate %: answers whose answer line parses.",
}


def figures_by_stage(answers: pd.DataFrame, reference: pd.DataFrame, stages: Sequence[int],
                     *, resamples: int, seed: int) -> pd.DataFrame:
    """One model's figures on each test stage's studies: rows (test stage, label) with `value`
    and its patient-bootstrap interval, label one of `answer_metrics`' figures or of
    `accuracy_table`'s (the accuracies); `answers`, `reference` and `stages` have one row per
    study."""
    stages = np.asarray(stages)
    rows = []
    for stage in sorted(set(stages.tolist())):
        mask = stages == stage
        picked = answers[mask].reset_index(drop=True)
        truth = reference[mask].reset_index(drop=True)
        subjects = answers.loc[mask, "subject_id"].to_numpy()
        primary = answer_metrics(picked, truth, subjects, resamples=resamples, seed=seed)
        accuracy = accuracy_table(picked, truth, subjects, resamples=resamples, seed=seed)
        # Both tables have the exact-answer share (the same figure): kept once.
        accuracy = accuracy[~accuracy["label"].isin(primary["label"])]
        rows.append(pd.concat([primary, accuracy.rename(columns={"accuracy": "value"})
                               .drop(columns="unparsed")]).assign(test_stage=stage))
    return pd.concat(rows, ignore_index=True)


def no_finding_floor(reference: pd.DataFrame, stages: Sequence[int], subject_ids: Sequence,
                     *, resamples: int, seed: int) -> pd.DataFrame:
    """What answering "No Finding" for every study scores on each test stage, as
    `figures_by_stage` rows: the floor a model must clear to show it reads the image. A
    constant negative answer's average-five accuracy is one minus the diseases' prevalence,
    so it moves with each stage's label mix, and a model stuck on it looks strong there."""
    answers = no_finding_answers(len(reference)).assign(subject_id=np.asarray(subject_ids))
    return figures_by_stage(answers, reference, stages, resamples=resamples, seed=seed)


def stage_matrix(per_stage: Mapping[int, pd.DataFrame], label: str = AVERAGE_FIVE
                 ) -> pd.DataFrame:
    """Rows: the training stage after which the model was scored; columns: the test stage;
    values: `label`'s figure. `per_stage` maps a training stage to `figures_by_stage`."""
    return pd.DataFrame({
        trained: table[table["label"] == label].set_index("test_stage")["value"]
        for trained, table in sorted(per_stage.items())}).T.rename_axis(
            index="after stage", columns="test stage")


def forgetting(matrix: pd.DataFrame) -> float | None:
    """Mean over earlier test stages of (best accuracy before the last stage - accuracy after
    the last); None with a single stage or only the last stage's row."""
    last = matrix.index.max()
    earlier = [j for j in matrix.columns if j < last]
    if not earlier or len(matrix.index) < 2:
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


def _row(name: object, values: pd.Series, stages: Sequence[int]) -> str:
    return (f"| {name} | " + " | ".join(_percent(values.get(j)) for j in stages)
            + f" | {_percent(float(values.mean()))} |")


def staged_markdown(matrices: Mapping[str, pd.DataFrame], initial: pd.Series,
                    probes: Mapping[str, Mapping[int, Mapping[str, float | None]]],
                    *, reference: str, test_studies: Mapping[int, int],
                    floor: pd.DataFrame, other: Mapping[str, Mapping[str, pd.DataFrame]]
                    ) -> str:
    """The staged report: per method the accuracy matrix, forgetting and backward transfer,
    the `MATRIX_FIGURES` matrices, then the probes' trajectory. `initial`: the stage-0 SFT
    model's accuracy per test stage; `floor`: `no_finding_floor`'s figures (rows: label,
    columns: test stage); `other`: per `MATRIX_FIGURES` figure, per method (and 'sft (stage
    0)') its `stage_matrix`."""
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
             _row(FLOOR, floor.loc[AVERAGE_FIVE], stages),
             ""]
    summary = ["## Summary", "", ("Final: the last stage's model, mean over test stages; the "
               "floor's macro-F1 (five) is 0 (undefined on a stage with none of the five)."), "",
               (f"| method | final {MACRO_F1_FIVE} | its forgetting | final {PARSE_RATE} | "
               "final average five | forgetting | backward transfer |"),
               "|---|---|---|---|---|---|---|"]
    for method, matrix in matrices.items():
        lines += [f"## {method}", "", header, rule]
        lines += [_row(trained, row, stages) for trained, row in matrix.iterrows()]
        lines.append("")
        primary, parsed = other[MACRO_F1_FIVE][method], other[PARSE_RATE][method]
        summary.append(
            f"| {method} | {_percent(float(primary.iloc[-1].mean()))} | "
            f"{_signed(forgetting(primary))} | {_percent(float(parsed.iloc[-1].mean()))} | "
            f"{_percent(float(matrix.iloc[-1].mean()))} | {_signed(forgetting(matrix))} | "
            f"{_signed(backward_transfer(matrix))} |")
    if not matrices:  # an empty table would read as a failed run
        summary = ["## Summary", "", "No method was scored: the stage-0 SFT model alone."]
    lines += summary
    for figure, title in MATRIX_FIGURES.items():
        lines += ["", f"## {figure} after each stage", "", title, "",
                  "| model | " + header[len("| after stage | "):], rule,
                  _row(FLOOR, floor.loc[figure], stages)]
        for name, matrix in other[figure].items():
            lines += [_row(f"{name}, after {trained}" if name in matrices else name, row,
                           stages) for trained, row in matrix.iterrows()]
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


def _nested(matrix: pd.DataFrame) -> dict[int, dict[int, float]]:
    return {int(k): {int(j): float(v) for j, v in row.items()} for k, row in matrix.iterrows()}


@dataclass(frozen=True)
class StagedFigures:
    """Every method's matrices and probes after each stage, the stage-0 SFT model's row, and
    the all-'No Finding' floor: what `staged.json`, the plot and the report are made of."""

    matrices: dict[str, pd.DataFrame]
    other: dict[str, dict[str, pd.DataFrame]]  # per MATRIX_FIGURES figure, per method
    probes: dict[str, dict[int, dict[str, float | None]]]
    methods: dict[str, dict]
    initial: pd.Series
    initial_probes: dict[str, float | None]
    floor: pd.DataFrame
    floor_rows: pd.DataFrame
    test_studies: dict[int, int]

    def summary(self, reference: str, stages: int) -> dict:
        return {
            "reference": reference, "stages": stages, "test_studies": self.test_studies,
            "initial": {int(j): float(v) for j, v in self.initial.items()},
            "initial_probes": self.initial_probes, "methods": self.methods,
            "initial_exact": _nested(self.other[EXACT][INITIAL])[0],
            "initial_macro_f1_five": _nested(self.other[MACRO_F1_FIVE][INITIAL])[0],
            "initial_parse_rate": _nested(self.other[PARSE_RATE][INITIAL])[0],
            "floor": {label: {int(j): float(v) for j, v in row.items()}
                      for label, row in self.floor.iterrows()},
            "floor_per_stage": self.floor_rows.to_dict("records"),
        }

    def markdown(self, reference: str) -> str:
        return staged_markdown(self.matrices, self.initial, self.probes, reference=reference,
                               test_studies=self.test_studies, floor=self.floor,
                               other=self.other)


def staged_figures(runs: Mapping[str, Sequence[Mapping]], answers: Mapping[str, pd.DataFrame],
                   probes: Mapping[str, Mapping[str, float | None]], labels: pd.DataFrame,
                   test_stages: Sequence[int], subject_ids: Sequence, *, resamples: int,
                   seed: int) -> StagedFigures:
    """The staged figures from each model's answers and report probes (both keyed by the
    model's data version). `runs`: per method (and `INITIAL`) its entries in stage order, each
    with `stage` and `data_version`; `labels`, `test_stages`, `subject_ids`: one row per test
    study, in the answers' order."""
    reference = reference_answers(labels)
    test_stages = np.asarray(test_stages)
    by_stage = {version: figures_by_stage(frame, reference, test_stages,
                                          resamples=resamples, seed=seed)
                for version, frame in answers.items()}
    picked = {version: {name: values.get(name) for name in TRAJECTORY_PROBES}
              for version, values in probes.items()}
    initial_version = runs[INITIAL][0]["data_version"]
    matrices, trajectories, methods = {}, {}, {}
    other = {figure: {INITIAL: stage_matrix({0: by_stage[initial_version]}, figure)}
             for figure in MATRIX_FIGURES}
    for method, entries in runs.items():
        if method == INITIAL:
            continue
        per_stage = {e["stage"]: by_stage[e["data_version"]] for e in entries}
        matrix = matrices[method] = stage_matrix(per_stage)
        for figure in MATRIX_FIGURES:
            other[figure][method] = stage_matrix(per_stage, figure)
        trajectories[method] = {e["stage"]: picked[e["data_version"]] for e in entries}
        primary = other[MACRO_F1_FIVE][method]
        methods[method] = {"matrix": _nested(matrix),
                           "final_mean": float(matrix.iloc[-1].mean()),
                           "forgetting": forgetting(matrix),
                           "backward_transfer": backward_transfer(matrix),
                           "exact_matrix": _nested(other[EXACT][method]),
                           "macro_f1_five_matrix": _nested(primary),
                           "final_mean_macro_f1_five": float(primary.iloc[-1].mean()),
                           "forgetting_macro_f1_five": forgetting(primary),
                           "parse_rate_matrix": _nested(other[PARSE_RATE][method]),
                           "probes": trajectories[method],
                           "per_stage": {e["stage"]: per_stage[e["stage"]].to_dict("records")
                                         for e in entries}}
    floor_rows = no_finding_floor(reference, test_stages, subject_ids, resamples=resamples,
                                  seed=seed)
    floor = floor_rows[floor_rows["label"].isin([AVERAGE_FIVE, *MATRIX_FIGURES])].pivot(
        index="label", columns="test_stage", values="value")
    counts = pd.Series(test_stages).value_counts().sort_index()
    return StagedFigures(
        matrices, other, trajectories, methods,
        initial=stage_matrix({0: by_stage[initial_version]}).iloc[0],
        initial_probes=picked[initial_version], floor=floor, floor_rows=floor_rows,
        test_studies={int(k): int(v) for k, v in counts.items()})

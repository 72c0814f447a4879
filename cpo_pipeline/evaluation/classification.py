"""Disease classification from answer lines, in the paper's terms, with patient-bootstrap CIs.

A generated trajectory's answer line ("The disease of this patient is X and Y.") is parsed into
the diseases it names (`parse_answers`). Against the study's reference labels (positive = 1.0;
uncertain and negative are absent, as the answer lines of the training data state them) each
answer label gets a per-disease accuracy: over every test study, the share where "the answer
names d" equals "d is positive". The paper reports "top-1 accuracy" per finding on MS-CXR-T
without defining it for multi-label answers; this is our reading, stated in the report. An
answer that does not parse is wrong for every label and counted (`unparsed`), never dropped.
The averages are the mean of the per-disease accuracies over the paper's five findings and over
all answer labels; `exact` is the share of answers naming exactly the reference diagnoses.

Per-disease accuracy rewards a constant answer: the five are 4-21% prevalent, so answering
"No Finding" to every study scores 0.90-0.93 on their average. `answer_metrics` gives the
figures such an answer cannot pass, which rank methods: answer-line macro-F1 and balanced
accuracy over the five and over all 13 answer labels, exact answers, and the parse rate; the
all-"No Finding" answers (`no_finding_answers`) are scored beside every model as the floor.
An answer line alone (the no-CoT ablation's format) parses as an answer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cpo_pipeline.evaluation.resampling import (
    RESAMPLES,
    mean_interval,
    percentile_interval,
    resample_weights,
)
from cpo_pipeline.radiology.answer_format import TrajectoryFormatError, parse_answer
from cpo_pipeline.radiology.chexpert import DISEASES, LABEL_POSITIVE, NO_FINDING

# MS-CXR-T's five findings, the columns of the paper's Table 2.
PAPER_FIVE = ("Consolidation", "Pleural Effusion", "Pneumonia", "Pneumothorax", "Edema")
# What an answer line can name: the 12 diseases and No Finding (Support Devices is a CheXpert
# label but not a diagnosis; the findings carry it, `clinical` scores it).
ANSWER_LABELS = (*DISEASES, NO_FINDING)
AVERAGE_FIVE, AVERAGE_ALL, EXACT = "average (five)", "average (all 13)", "exact answer"
MACRO_F1_FIVE, MACRO_F1_ALL = "macro-F1 (five)", "macro-F1 (all 13)"
BALANCED_FIVE, BALANCED_ALL = "balanced accuracy (five)", "balanced accuracy (all 13)"
PARSE_RATE = "parse rate"
ANSWER_METRICS = (MACRO_F1_FIVE, MACRO_F1_ALL, BALANCED_FIVE, BALANCED_ALL, EXACT, PARSE_RATE)
# How reports name `no_finding_answers`' row.
FLOOR = "every answer 'No Finding' (the floor)"


def parse_answers(texts: Sequence[str | None]) -> pd.DataFrame:
    """One row per text: a boolean column per `ANSWER_LABELS` (named in the answer line),
    `parsed` (False for an answer that does not parse: every label False), `findings` (the
    thinking; "" for an answer line alone, None when unparsed) and `error` (why it did not
    parse)."""
    rows = []
    for text in texts:
        try:
            trajectory = parse_answer(text or "")
        except TrajectoryFormatError as error:
            rows.append({**dict.fromkeys(ANSWER_LABELS, False), "parsed": False,
                         "findings": None, "error": str(error)})
            continue
        named = set(trajectory.diagnoses)
        rows.append({**{label: label in named for label in ANSWER_LABELS}, "parsed": True,
                     "findings": trajectory.findings, "error": None})
    return pd.DataFrame(rows, columns=[*ANSWER_LABELS, "parsed", "findings", "error"])


def reference_answers(labels: pd.DataFrame) -> pd.DataFrame:
    """The answer each study's reference labels call for: a boolean column per
    `ANSWER_LABELS`, a disease True when positive (1.0), No Finding when no disease is."""
    frame = pd.DataFrame({d: labels[d].to_numpy() == LABEL_POSITIVE for d in DISEASES})
    frame[NO_FINDING] = ~frame[list(DISEASES)].any(axis=1)
    return frame[list(ANSWER_LABELS)]


def correct_matrix(predicted: pd.DataFrame, reference: pd.DataFrame) -> np.ndarray:
    """(rows, labels) booleans: the answer agrees with the reference on the label, and parsed."""
    parsed = predicted["parsed"].to_numpy()[:, None]
    agree = predicted[list(ANSWER_LABELS)].to_numpy() == reference[list(ANSWER_LABELS)].to_numpy()
    return agree & parsed


def _check_rows(predicted: pd.DataFrame, reference: pd.DataFrame, subject_ids: Sequence) -> None:
    if len(predicted) != len(reference) or len(predicted) != len(subject_ids):
        raise ValueError(f"{len(predicted)} answers, {len(reference)} references and "
                         f"{len(subject_ids)} patient ids: one of each per study")


def accuracy_table(predicted: pd.DataFrame, reference: pd.DataFrame, subject_ids: Sequence,
                   *, resamples: int = RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """Per answer label, the two averages and the exact-answer share: accuracy with its
    patient-bootstrap 95% interval (`n` studies, `unparsed` answers counted as wrong)."""
    _check_rows(predicted, reference, subject_ids)
    groups = np.asarray(subject_ids)
    correct = correct_matrix(predicted, reference).astype(float)
    columns = {label: correct[:, i] for i, label in enumerate(ANSWER_LABELS)}
    five = [ANSWER_LABELS.index(d) for d in PAPER_FIVE]
    columns[AVERAGE_FIVE] = correct[:, five].mean(axis=1)
    columns[AVERAGE_ALL] = correct.mean(axis=1)
    columns[EXACT] = correct.all(axis=1).astype(float)
    unparsed = int((~predicted["parsed"]).sum())
    # One set of resamples for every column, so the averages' intervals match their parts'.
    weights = resample_weights(groups, resamples, seed) if len(groups) else None
    rows = []
    for name, values in columns.items():
        interval = mean_interval(values, groups, weights=weights)
        rows.append({"label": name, "n": len(values), "accuracy": interval.value,
                     "ci_low": interval.low, "ci_high": interval.high, "unparsed": unparsed})
    return pd.DataFrame(rows)


def no_finding_answers(rows: int) -> pd.DataFrame:
    """`parse_answers`' table for answering "No Finding" to each of `rows` studies: the floor."""
    answers = pd.DataFrame({label: label == NO_FINDING for label in ANSWER_LABELS},
                           index=range(rows))
    answers["parsed"] = True
    return answers


def _label_figures(counts: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per (draw, label): F1 and balanced accuracy from the confusion counts, NaN where
    undefined (F1: no positive answered or present; balanced: a class absent)."""
    tp, fp, fn, tn = (counts[k] for k in ("tp", "fp", "fn", "tn"))
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
        sensitivity = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        specificity = np.where(tn + fp > 0, tn / (tn + fp), np.nan)
    return f1, (sensitivity + specificity) / 2


def _nanmean(values: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        counted = (~np.isnan(values)).sum(axis=1)
        return np.where(counted > 0, np.nansum(values, axis=1) / np.maximum(counted, 1), np.nan)


def answer_metric_draws(predicted: pd.DataFrame, reference: pd.DataFrame,
                        weights: np.ndarray) -> dict[str, np.ndarray]:
    """Each `answer_metrics` figure under each row of `weights` ((draws, studies): a study's
    weight in each draw; a row of ones is the figure itself), so that figures of several
    models or seeds under the same draws can be averaged or differenced before taking an
    interval (paired comparisons)."""
    named = predicted[list(ANSWER_LABELS)].to_numpy(dtype=bool) & predicted[
        "parsed"].to_numpy(dtype=bool)[:, None]
    truth = reference[list(ANSWER_LABELS)].to_numpy(dtype=bool)
    cells = {"tp": named & truth, "fp": named & ~truth, "fn": ~named & truth,
             "tn": ~named & ~truth}
    exact = (correct_matrix(predicted, reference).all(axis=1)).astype(float)
    parsed = predicted["parsed"].to_numpy(dtype=float)
    counts = {key: weights @ value.astype(float) for key, value in cells.items()}
    f1, balanced = _label_figures(counts)
    five = [ANSWER_LABELS.index(d) for d in PAPER_FIVE]
    with np.errstate(invalid="ignore", divide="ignore"):
        total = weights.sum(axis=1)
        return {
            MACRO_F1_FIVE: _nanmean(f1[:, five]), MACRO_F1_ALL: _nanmean(f1),
            BALANCED_FIVE: _nanmean(balanced[:, five]), BALANCED_ALL: _nanmean(balanced),
            EXACT: weights @ exact / total, PARSE_RATE: weights @ parsed / total,
            **{f"F1 {label}": f1[:, i] for i, label in enumerate(ANSWER_LABELS)},
        }


def with_resamples(subject_ids: Sequence, resamples: int, seed: int) -> np.ndarray:
    """Weights for `answer_metric_draws`: a row of ones (the figures), then one row per
    patient resample."""
    ones = np.ones((1, len(subject_ids)))
    if not len(subject_ids):
        return ones
    return np.vstack([ones, resample_weights(np.asarray(subject_ids), resamples, seed)])


def draws_table(draws: dict[str, np.ndarray], rows: int) -> pd.DataFrame:
    """`answer_metric_draws` (row 0 the figure, the others resamples) as figures with their
    percentile intervals: columns label, n, value, ci_low, ci_high."""
    table = []
    for name, values in draws.items():
        value = None if np.isnan(values[0]) else float(values[0])
        low, high = percentile_interval(values[1:]) if value is not None else (None, None)
        table.append({"label": name, "n": rows, "value": value, "ci_low": low, "ci_high": high})
    return pd.DataFrame(table)


def answer_metrics(predicted: pd.DataFrame, reference: pd.DataFrame, subject_ids: Sequence,
                   *, resamples: int = RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """The figures a constant answer cannot pass, each with its patient-bootstrap 95%
    interval: rows `ANSWER_METRICS`, then `F1 <label>` per answer label (columns label, n,
    value, ci_low, ci_high).

    Per label, "the answer names it" is the prediction and "the reference has it positive"
    the truth; an unparsed answer names nothing. F1 is undefined for a label neither answered
    nor present, balanced accuracy (mean of sensitivity and specificity) for a label present in
    every study or in none: a macro average is over the labels where it is defined. Exact: the
    answer parses and names exactly the reference's labels. Parse rate: the share that parses.
    """
    _check_rows(predicted, reference, subject_ids)
    draws = answer_metric_draws(predicted, reference,
                                with_resamples(subject_ids, resamples, seed))
    return draws_table(draws, len(predicted))

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
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cpo_pipeline.evaluation.resampling import RESAMPLES, mean_interval, resample_weights
from cpo_pipeline.radiology.answer_format import TrajectoryFormatError, parse_trajectory
from cpo_pipeline.radiology.chexpert import DISEASES, LABEL_POSITIVE, NO_FINDING

# MS-CXR-T's five findings, the columns of the paper's Table 2.
PAPER_FIVE = ("Consolidation", "Pleural Effusion", "Pneumonia", "Pneumothorax", "Edema")
# What an answer line can name: the 12 diseases and No Finding (Support Devices is a CheXpert
# label but not a diagnosis; the findings carry it, `clinical` scores it).
ANSWER_LABELS = (*DISEASES, NO_FINDING)
AVERAGE_FIVE, AVERAGE_ALL, EXACT = "average (five)", "average (all 13)", "exact answer"


def parse_answers(texts: Sequence[str | None]) -> pd.DataFrame:
    """One row per text: a boolean column per `ANSWER_LABELS` (named in the answer line),
    `parsed` (False for an answer that does not parse: every label False), `findings` (the
    thinking, None when unparsed) and `error` (why it did not parse)."""
    rows = []
    for text in texts:
        try:
            trajectory = parse_trajectory(text or "")
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


def accuracy_table(predicted: pd.DataFrame, reference: pd.DataFrame, subject_ids: Sequence,
                   *, resamples: int = RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """Per answer label, the two averages and the exact-answer share: accuracy with its
    patient-bootstrap 95% interval (`n` studies, `unparsed` answers counted as wrong)."""
    if len(predicted) != len(reference) or len(predicted) != len(subject_ids):
        raise ValueError(f"{len(predicted)} answers, {len(reference)} references and "
                         f"{len(subject_ids)} patient ids: one of each per study")
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

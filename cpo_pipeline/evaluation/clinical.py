"""Clinical efficacy: the project's rule-based labeller on generated vs reference findings.

Both texts are labelled with `radiology.labeller.label_report` (the labeller the ingestion and
the counterfactual verifier use). A label counts as present when it is positive (1.0); uncertain
(-1.0) counts as absent ("U-zeros"), the policy of the answer lines the models are trained on.
Per label: precision, recall and F1 of the generated text's labels against the reference's;
micro (counts pooled over labels) and macro (mean of per-label F1) over the 14 CheXpert labels
and over the paper's five, each with a patient-bootstrap 95% interval. A model whose answer did
not parse contributes an empty findings text (nothing found).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cpo_pipeline.evaluation.classification import PAPER_FIVE
from cpo_pipeline.evaluation.resampling import (
    RESAMPLES,
    percentile_interval,
    resample_weights,
)
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS, LABEL_POSITIVE
from cpo_pipeline.radiology.labeller import label_report

UNCERTAIN_POLICY = "uncertain counts as absent (U-zeros), as in the training answer lines"


def present_labels(texts: Sequence[str | None]) -> np.ndarray:
    """(texts, 14) booleans: the label is positive in the text (`label_report`)."""
    rows = []
    for text in texts:
        labels = label_report(text or "")
        rows.append([labels.get(label) == LABEL_POSITIVE for label in CHEXPERT_LABELS])
    return np.array(rows, dtype=bool).reshape(len(rows), len(CHEXPERT_LABELS))


def _nanmean(values: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """The mean of the non-NaN values, NaN (without a warning) where there are none."""
    values = np.asarray(values, dtype=float)
    counts = (~np.isnan(values)).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nansum(values, axis=axis) / counts


def _scores(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, ...]:
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (tp + fp)
        recall = tp / (tp + fn)
        f1 = 2 * tp / (2 * tp + fp + fn)
    return precision, recall, f1


def efficacy_table(generated: Sequence[str | None], reference: Sequence[str],
                   subject_ids: Sequence, *, resamples: int = RESAMPLES, seed: int = 0
                   ) -> pd.DataFrame:
    """One row per label and per average (micro / macro over 14 and over five): support
    (reference positives), precision, recall, F1, and F1's patient-bootstrap interval. A score
    with an empty denominator is NaN (macro averages leave such labels out)."""
    if len(generated) != len(reference) or len(generated) != len(subject_ids):
        raise ValueError(f"{len(generated)} generated and {len(reference)} reference texts and "
                         f"{len(subject_ids)} patient ids: one of each per study")
    predicted, truth = present_labels(generated), present_labels(reference)
    tp, fp, fn = (predicted & truth), (predicted & ~truth), (~predicted & truth)
    weights = resample_weights(np.asarray(subject_ids), resamples, seed)
    # Counts per label: the point estimate (weight 1 per row) and every resample at once.
    point = [m.sum(axis=0).astype(float) for m in (tp, fp, fn)]
    sampled = [weights @ m.astype(float) for m in (tp, fp, fn)]
    rows = []
    p, r, f = _scores(*point)
    _, _, f_sampled = _scores(*sampled)
    for i, label in enumerate(CHEXPERT_LABELS):
        low, high = percentile_interval(f_sampled[:, i])
        rows.append({"label": label, "support": int(truth[:, i].sum()), "precision": p[i],
                     "recall": r[i], "f1": f[i], "f1_ci_low": low, "f1_ci_high": high})
    for name, labels in (("14", CHEXPERT_LABELS), ("five", PAPER_FIVE)):
        columns = [CHEXPERT_LABELS.index(label) for label in labels]
        micro = _scores(*(c[columns].sum() for c in point))
        micro_sampled = _scores(*(s[:, columns].sum(axis=1) for s in sampled))[2]
        rows.append({"label": f"micro ({name})", "support": int(truth[:, columns].sum()),
                     "precision": micro[0], "recall": micro[1], "f1": micro[2],
                     **dict(zip(("f1_ci_low", "f1_ci_high"),
                                percentile_interval(micro_sampled), strict=True))})
        macro_sampled = _nanmean(f_sampled[:, columns], axis=1)
        rows.append({"label": f"macro ({name})", "support": int(truth[:, columns].sum()),
                     "precision": float(_nanmean(p[columns])),
                     "recall": float(_nanmean(r[columns])), "f1": float(_nanmean(f[columns])),
                     **dict(zip(("f1_ci_low", "f1_ci_high"),
                                percentile_interval(macro_sampled), strict=True))})
    return pd.DataFrame(rows)

"""Per-label ROC AUC from a model's likelihood scores, with patient-bootstrap intervals.

A generative model gives no probability per label, so the paper's AUCs (its Table 4) need a
score; ours is the model's own log-likelihood of the answer line naming the label, teacher-forced
after its thinking (`evaluation.likelihood` computes it). Here: any score per study and label,
against the reference (positive = 1.0), the AUC and its 95% interval resampling patients; a
resample holding one class only is left out; a label with one class only in the test set has
no AUC (None).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from cpo_pipeline.evaluation.resampling import RESAMPLES, statistic_interval


def auc_table(scores: pd.DataFrame, reference: pd.DataFrame, subject_ids: Sequence, *,
              resamples: int = RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """One row per column of `scores` (a label): positives, negatives, AUC, its interval."""
    groups = np.asarray(subject_ids)
    rows = []
    for label in scores.columns:
        score = scores[label].to_numpy(dtype=float)
        truth = reference[label].to_numpy(dtype=bool)

        def auc(rows_drawn: np.ndarray, score=score, truth=truth) -> float:
            drawn = truth[rows_drawn]
            if drawn.all() or not drawn.any():
                return float("nan")
            return float(roc_auc_score(drawn, score[rows_drawn]))

        positives = int(truth.sum())
        if positives in (0, len(truth)):
            value = low = high = None
        else:
            interval = statistic_interval(auc, len(truth), groups, resamples=resamples, seed=seed)
            value, low, high = interval.value, interval.low, interval.high
        rows.append({"label": label, "positives": positives, "negatives": len(truth) - positives,
                     "auc": value, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)

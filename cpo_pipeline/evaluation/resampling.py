"""Confidence intervals that respect patients: percentile bootstrap resampling patients.

A patient's studies are not independent (the same chest, the same reader), so every interval
here resamples patients with replacement and keeps each drawn patient's studies together
(a cluster bootstrap). The resamples are drawn once per call from `seed`, so a figure and its
interval are reproducible; `resample_weights` gives the draws as per-row weights, so that a
statistic over rows (an accuracy, an F1, an average of per-disease accuracies) is computed for
every resample with one matrix product instead of a Python loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

RESAMPLES = 1000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate and its percentile interval (None where it cannot be computed)."""

    value: float | None
    low: float | None
    high: float | None


def resample_weights(groups: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """(resamples, rows) weights: how many times each row's group was drawn in each resample
    of the groups (patients), with replacement, as many groups as there are."""
    labels, index = np.unique(np.asarray(groups), return_inverse=True)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(labels), size=(resamples, len(labels)))
    counts = np.zeros((resamples, len(labels)))
    np.add.at(counts, (np.repeat(np.arange(resamples), len(labels)), draws.ravel()), 1.0)
    return counts[:, index]


def percentile_interval(samples: np.ndarray, confidence: float = CONFIDENCE
                        ) -> tuple[float | None, float | None]:
    """The central `confidence` interval of `samples`, NaN samples (a resample where the
    statistic is undefined) left out."""
    samples = np.asarray(samples, dtype=float)
    samples = samples[~np.isnan(samples)]
    if samples.size == 0:
        return None, None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def weighted_means(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per resample, the weighted mean of `values` (rows) or of each column of a (rows, k)
    matrix; NaN where a resample gives the rows no weight."""
    values = np.asarray(values, dtype=float)
    mask = ~np.isnan(values)
    filled = np.where(mask, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ filled) / (weights @ mask.astype(float))


def mean_interval(values: np.ndarray, groups: np.ndarray, *, resamples: int = RESAMPLES,
                  seed: int = 0, confidence: float = CONFIDENCE,
                  weights: np.ndarray | None = None) -> Interval:
    """The mean of `values` (NaN rows left out) with its patient-bootstrap interval (`weights`:
    resamples already drawn for these rows, to share them between statistics)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0 or np.isnan(values).all():
        return Interval(None, None, None)
    if weights is None:
        weights = resample_weights(groups, resamples, seed)
    samples = weighted_means(values, weights)
    return Interval(float(np.nanmean(values)), *percentile_interval(samples, confidence))


def statistic_interval(statistic: Callable[[np.ndarray], float], rows: int, groups: np.ndarray,
                       *, resamples: int = RESAMPLES, seed: int = 0,
                       confidence: float = CONFIDENCE) -> Interval:
    """Any statistic of the rows (given the row indices of a resample, repeats included) with
    its patient-bootstrap interval: for statistics that are not means (a ROC AUC)."""
    weights = resample_weights(groups, resamples, seed)
    everything = np.arange(rows)
    samples = [statistic(np.repeat(everything, w.astype(int))) for w in weights]
    return Interval(statistic(everything), *percentile_interval(np.array(samples), confidence))

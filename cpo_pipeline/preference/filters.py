"""The filters between trajectories and training rows, each a boolean mask over a frame
(True = drop), and the log that counts what each dropped.

Texts are compared by their `text.text_ids` (normalised text), held in `*_text_id` columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cpo_pipeline.counterfactuals.generation import ACCEPTED

TRAIN = "train"
HELD_OUT_SPLITS = ("validate", "test")


@dataclass
class FilterLog:
    """Rows in, then the rows each filter dropped, in the order the filters ran."""

    rows_in: int
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, name: str, frame: pd.DataFrame, mask: pd.Series | np.ndarray) -> pd.DataFrame:
        """`frame` without the rows `mask` marks, counted under `name`."""
        mask = np.asarray(mask, dtype=bool)
        self.dropped[name] = self.dropped.get(name, 0) + int(mask.sum())
        return frame[~mask]

    def counts(self, kept: int) -> dict[str, int]:
        """`rows in`, each filter's count, `kept`: what the metadata and the card show."""
        return {"rows in": self.rows_in, **self.dropped, "kept": kept}


def not_accepted(counterfactuals: pd.DataFrame) -> pd.Series:
    """Counterfactuals the verifier rejected, and dead letters (no answer came back)."""
    return counterfactuals["verdict"] != ACCEPTED


def same_text(frame: pd.DataFrame) -> pd.Series:
    """Pairs whose chosen and rejected texts normalise alike: nothing to prefer."""
    return frame["chosen_text_id"] == frame["rejected_text_id"]


def leaking_into_train(frame: pd.DataFrame, id_columns: Sequence[str],
                       held_out: np.ndarray) -> pd.Series:
    """Train rows with a text (any of `id_columns`) among the `held_out` ids, those of every
    validate and test text: the train copy goes, never the held-out one, so evaluation stays
    on texts the model was not trained on."""
    in_held_out = np.zeros(len(frame), dtype=bool)
    for column in id_columns:
        in_held_out |= np.isin(frame[column].to_numpy(), held_out)
    return pd.Series((frame["split"] == TRAIN).to_numpy() & in_held_out, index=frame.index)


def duplicates(frame: pd.DataFrame, text_columns: Sequence[str],
               id_columns: Sequence[str]) -> tuple[pd.Series, pd.Series]:
    """(exact, near) duplicates within a split, each row after its first occurrence in frame
    order: exact when the raw `text_columns` repeat, near when only their normalised forms
    (`id_columns`) do. Dropping both masks keeps one row per normalised text."""
    normalised = frame.duplicated(["split", *id_columns])
    exact = frame.duplicated(["split", *text_columns])
    return exact, normalised & ~exact


def over_cap(frame: pd.DataFrame, group: str, cap: int | None, seed: int) -> pd.Series:
    """Train rows beyond `cap` of their `group` (the study's whole answer, e.g. "No Finding",
    "Edema and Pleural Effusion"), chosen at random with `seed`; validate and test keep their
    natural mix. No cap: nothing."""
    drop = pd.Series(False, index=frame.index)
    if cap is None:
        return drop
    if cap < 0:
        raise ValueError(f"per-disease cap must be >= 0, got {cap}")
    train = frame[frame["split"] == TRAIN]
    order = np.random.default_rng(seed).permutation(len(train))
    shuffled = train.iloc[order]
    rank = shuffled.groupby(group, sort=False).cumcount()
    drop[rank.index[rank.to_numpy() >= cap]] = True
    return drop

"""The blocking gates on every training set, as pure functions of its rows.

Each returns a `GateResult` the asset turns into a Dagster check result; each names the rows
(pair or example id, study, file) that fail it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc

from cpo_pipeline.counterfactuals.bounds import HardNegativeBounds
from cpo_pipeline.counterfactuals.generation import ACCEPTED, COUNTERFACTUAL, FACTUAL
from cpo_pipeline.counterfactuals.masking import findings_of, seed_mask
from cpo_pipeline.counterfactuals.quality import hard_negative_verdict
from cpo_pipeline.ingestion.summary import patients_in_several_splits
from cpo_pipeline.preference.filters import TRAIN
from cpo_pipeline.preference.text import normalise
from cpo_pipeline.storage import sha256_file

_EXAMPLES = 5
TEST = "test"


@dataclass(frozen=True)
class GateResult:
    passed: bool
    description: str
    metadata: dict[str, object] = field(default_factory=dict)


def _row_id(rows: pd.DataFrame) -> str:
    return "pair_id" if "pair_id" in rows.columns else "example_id"


def no_patient_in_two_splits(rows: pd.DataFrame) -> GateResult:
    """Splits are patient-disjoint in the set itself, not only in `cxr_studies`."""
    leaking = patients_in_several_splits(rows)
    return GateResult(
        not leaking,
        f"{len(leaking)} patients have rows in more than one split"
        + (f" (e.g. subject_id {leaking[:_EXAMPLES]})" if leaking else ""),
        {"patients_in_several_splits": len(leaking), "examples": leaking[:_EXAMPLES]})


def chosen_differs_from_rejected(rows: pd.DataFrame) -> GateResult:
    """No pair prefers a text over itself (compared normalised, `text.normalise`)."""
    equal = pc.fill_null(pc.equal(normalise(rows["chosen"]), normalise(rows["rejected"])), True)
    same = rows.loc[equal.to_numpy(zero_copy_only=False), "pair_id"].tolist()
    return GateResult(
        not same,
        f"{len(same)} of {len(rows)} pairs have chosen == rejected after normalisation"
        + (f" (e.g. pair_id {same[:_EXAMPLES]})" if same else ""),
        {"pairs_chosen_equals_rejected": len(same), "examples": same[:_EXAMPLES]})


def images_match(rows: pd.DataFrame,
                 hash_file: Callable[[Path], str] = sha256_file) -> GateResult:
    """Every image a row references exists and has the sha256 the row records; each distinct
    image is read once."""
    images = rows.groupby("image_path", sort=True).agg(
        sha256=("image_sha256", "unique"), study_id=("study_id", "first"))
    missing, mismatched = [], []
    for path, row in images.iterrows():
        file = Path(path)
        if not file.is_file():
            missing.append(f"study {row['study_id']}: {path}")
            continue
        actual = hash_file(file)
        if list(row["sha256"]) != [actual]:
            mismatched.append(f"study {row['study_id']}: {path} has sha256 {actual[:12]}…, "
                              f"rows record {[str(s)[:12] + '…' for s in row['sha256']]}")
    failed = missing + mismatched
    return GateResult(
        not failed,
        f"{len(missing)} of {len(images)} images missing, {len(mismatched)} with another sha256"
        + (f": {failed[:_EXAMPLES]}" if failed else ""),
        {"images": len(images), "missing": len(missing), "sha256_mismatch": len(mismatched),
         "examples": failed[:_EXAMPLES]})


def no_test_study_in_training(rows: pd.DataFrame, official_split: pd.Series) -> GateResult:
    """No train row is built from a study `cxr_studies` puts in the test split, on either
    side of a pair (`official_split`: split by study_id)."""
    train = rows[rows["split"] == TRAIN]
    columns = [name for name in ("study_id", "rejected_study_id") if name in rows.columns]
    leaking = pd.Series(False, index=train.index)
    for column in columns:
        leaking |= train[column].map(official_split).eq(TEST)
    offenders = train.loc[leaking, _row_id(rows)].tolist()
    return GateResult(
        not offenders,
        f"{len(offenders)} train rows are built from a test-split study"
        + (f" (e.g. {_row_id(rows)} {offenders[:_EXAMPLES]})" if offenders else ""),
        {"train_rows_from_test_studies": len(offenders), "examples": offenders[:_EXAMPLES]})


@dataclass(frozen=True)
class PairGateBounds(HardNegativeBounds):
    """The hard-negatives gate's bounds (`bounds.HardNegativeBounds`), measured on a seeded
    sample of at most `sample` train pairs."""

    sample: int = field(default=2_000, metadata={
        "help": "The hard-negative gate measures at most this many train pairs (seeded)."})
    seed: int = field(default=0, metadata={"help": "Seed of the gate's sample of train pairs."})


def as_trajectories(pairs: pd.DataFrame) -> pd.DataFrame:
    """CPO pairs as the trajectory rows `counterfactuals.quality` measures: each study's chosen
    as its factual, each rejected as an accepted counterfactual."""
    common = ["study_id", "subject_id"]
    factual = pairs.drop_duplicates("study_id")[[*common, "chosen"]].rename(
        columns={"chosen": "text"}).assign(kind=FACTUAL, verdict=FACTUAL)
    counterfactual = pairs[[*common, "rejected"]].rename(columns={"rejected": "text"}).assign(
        kind=COUNTERFACTUAL, verdict=ACCEPTED)
    rows = pd.concat([factual, counterfactual], ignore_index=True)
    return rows.assign(findings=rows["text"].map(findings_of))


def pairs_are_hard_negatives(pairs: pd.DataFrame,
                             bounds: PairGateBounds = PairGateBounds()) -> GateResult:
    """The hard-negatives gate on the train pairs a CPO trainer learns from: with the concept
    vocabulary masked, a patient-grouped classifier must not tell the rejected text from the
    chosen, and lengths must be alike (`quality.hard_negative_verdict`, the gate
    `counterfactual_trajectories` holds too)."""
    train = pairs[pairs["split"] == TRAIN]
    if len(train) > bounds.sample:
        train = train.sample(n=bounds.sample, random_state=bounds.seed)
    verdict = hard_negative_verdict(as_trajectories(train), seed_mask(), bounds)
    metadata = verdict.metadata()
    metadata["rejected_longer_share"] = metadata.pop("counterfactual_longer_share")
    return GateResult(verdict.passed, verdict.describe("train pairs"), metadata)

"""The four training sets of the paper's two stages, its baseline and its ablation, as tables:

- SFT: one example per study with an image, the factual trajectory as the answer;
- CPO pairs: chosen = the factual trajectory, rejected = an accepted counterfactual of the same
  study (and so the same image), one pair per accepted counterfactual;
- random negatives (the DPO baseline): each CPO pair's chosen, rejected = the factual trajectory
  of another study of the same split with another answer, drawn with a seed;
- diagnosis only (the "CPO without CoT" ablation): the CPO pairs, each text cut to its answer
  line.

Split and patient come from `cxr_studies` (the official split), the image hash from
`cxr_images`. Every step is a merge or a mask over whole columns, so the full CCF (320,416
counterfactuals, `benchmarks/bench_pairs.py`) assembles in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cpo_pipeline import schemas
from cpo_pipeline.counterfactuals.generation import ACCEPTED, COUNTERFACTUAL, FACTUAL
from cpo_pipeline.mimic_layout import SPLITS
from cpo_pipeline.preference.filters import (
    HELD_OUT_SPLITS,
    FilterLog,
    duplicates,
    leaking_into_train,
    not_accepted,
    over_cap,
    same_text,
)
from cpo_pipeline.preference.prompt import prompt_hash
from cpo_pipeline.preference.text import answers, digests, row_ids, strings, text_ids

SFT_COLUMNS = tuple(schemas.SFT_DATASET.names)
PAIR_COLUMNS = tuple(schemas.PREFERENCE_PAIRS.names)
VERSION_COLUMNS = ("trajectories_version", "studies_version", "images_version")
_TRAJECTORY_COLUMNS = ("study_id", "kind", "target_disease", "text", "verdict",
                       "expert_backend", "expert_model", "prompt_hash")


@dataclass(frozen=True)
class InputVersions:
    """Data versions of the tables a set was built from, stamped on each of its rows."""

    trajectories: str
    studies: str
    images: str

    def columns(self) -> dict[str, str]:
        return dict(zip(VERSION_COLUMNS, (self.trajectories, self.studies, self.images),
                        strict=True))


@dataclass(frozen=True)
class Assembled:
    """A set's rows (exactly its table's declared columns) and what each filter dropped."""

    frame: pd.DataFrame
    filters: dict[str, int]


@dataclass(frozen=True)
class PreparedTrajectories:
    """What the sets share, computed once. `rows`: one per trajectory, keys only (`row`, its
    position in `texts`; study, kind, target, verdict, writer; `trajectory_id`; official
    `split` and `has_image`; `raw_id` and `text_id`, equal where the raw or the normalised
    texts are; `digest` of the text; `diagnosis`). Filters run on these narrow rows and the
    texts are gathered once at the end. `held_out`: the text ids of every validate and test
    text, which no train row may carry."""

    rows: pd.DataFrame
    texts: pa.Array
    images: pd.DataFrame
    held_out: np.ndarray
    versions: InputVersions


def trajectory_ids(trajectories: pd.DataFrame) -> pd.Series:
    """A trajectory's id (the table has none): `row_ids` of study_id, kind and target disease
    (empty for the factual), i.e. the first 16 hex digits of sha256("study␟kind␟target"). It
    names the trajectory, not its wording: a regenerated text keeps its id."""
    return row_ids([trajectories["study_id"], trajectories["kind"],
                    trajectories["target_disease"]])


def study_images(studies: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    """Per study of `cxr_studies`: patient, official split, the chosen image's dicom_id and
    path, and its sha256 from `cxr_images` (null when cxr_images has no row for it)."""
    sha = images[["dicom_id", "image_sha256"]].drop_duplicates("dicom_id")
    return studies[["study_id", "subject_id", "split", "dicom_id", "image_path"]].merge(
        sha, on="dicom_id", how="left")


def prepare(trajectories: pd.DataFrame, studies: pd.DataFrame, images: pd.DataFrame,
            versions: InputVersions) -> PreparedTrajectories:
    """Ids, official split, answers and normalised texts of every trajectory, once."""
    missing = [name for name in _TRAJECTORY_COLUMNS if name not in trajectories.columns]
    if missing:
        raise ValueError(f"counterfactual_trajectories lacks the columns {missing}")
    texts = strings(trajectories["text"])
    rows = trajectories[[name for name in _TRAJECTORY_COLUMNS if name != "text"]].rename(
        columns={"prompt_hash": "expert_prompt_hash"}).reset_index(drop=True)
    rows["row"] = np.arange(len(rows))
    rows["trajectory_id"] = trajectory_ids(rows)
    repeated = rows["trajectory_id"].duplicated(keep=False)
    if repeated.any():
        first = rows[repeated].iloc[0]
        raise ValueError(
            f"{int(repeated.sum())} trajectory rows repeat a (study, kind, target): e.g. study "
            f"{first['study_id']}, {first['kind']} toward {first['target_disease']!r}")
    image = study_images(studies, images)
    rows = rows.merge(image[["study_id", "split", "image_sha256"]], on="study_id", how="left")
    rows["has_image"] = rows.pop("image_sha256").notna()
    kind = rows["kind"]
    rows["has_text"] = texts.is_valid().to_numpy(zero_copy_only=False)
    usable = rows["has_text"] & ((kind == FACTUAL) | (
        (kind == COUNTERFACTUAL) & (rows["verdict"] == ACCEPTED)))
    kept = pc.if_else(pa.array(usable.to_numpy()), texts, pa.nulls(len(texts), texts.type))
    rows["raw_id"] = pc.fill_null(pc.dictionary_encode(kept).indices, -1).to_numpy(
        zero_copy_only=False)
    [rows["text_id"]] = text_ids(kept)
    rows["digest"] = digests(kept)
    usable_texts = kept.filter(pa.array(usable.to_numpy())).to_pandas().set_axis(
        rows.index[usable])
    rows = rows.join(answers(usable_texts, rows[usable])[["diagnosis"]])
    held_out = np.unique(rows.loc[usable & rows["split"].isin(HELD_OUT_SPLITS), "text_id"])
    return PreparedTrajectories(rows, texts, image, held_out, versions)


def _in_split_order(frame: pd.DataFrame, *keys: str) -> pd.DataFrame:
    """Train, validate, test, then by `keys`: the order "first occurrence" refers to."""
    split = pd.Categorical(frame["split"], categories=list(SPLITS), ordered=True)
    return (frame.assign(_split=split).sort_values(["_split", *keys], kind="stable")
            .drop(columns="_split").reset_index(drop=True))


def _drop_duplicates(log: FilterLog, frame: pd.DataFrame, exact: list[str],
                     normalised: list[str]) -> pd.DataFrame:
    exact_rows, near_rows = duplicates(frame, exact, normalised)
    frame = log.drop("exact duplicate", frame, exact_rows)
    return log.drop("near duplicate (same normalised text)", frame, near_rows.loc[frame.index])


def _texts(prepared: PreparedTrajectories, rows: pd.Series) -> pd.Series:
    return prepared.texts.take(pa.array(rows.to_numpy(np.int64))).to_pandas()


def _with_images(frame: pd.DataFrame, prepared: PreparedTrajectories) -> pd.DataFrame:
    return frame.merge(prepared.images.drop(columns="split"), on="study_id", how="left")


def sft_examples(prepared: PreparedTrajectories, request: str, *, cap: int | None = None,
                 seed: int = 0) -> Assembled:
    """One example per study with an image: the user turn and the factual trajectory."""
    rows = prepared.rows[prepared.rows["kind"] == FACTUAL]
    log = FilterLog(len(rows))
    rows = log.drop("no text", rows, ~rows["has_text"])
    rows = log.drop("no image", rows, ~rows["has_image"])
    rows = _in_split_order(rows, "study_id")
    rows = log.drop("text also in validate or test", rows,
                    leaking_into_train(rows, ["text_id"], prepared.held_out))
    rows = _drop_duplicates(log, rows, ["raw_id"], ["text_id"])
    rows = log.drop("over the per-disease cap", rows, over_cap(rows, "diagnosis", cap, seed))
    frame = _with_images(rows, prepared).assign(
        prompt=request, completion=_texts(prepared, rows["row"]).to_numpy(),
        prompt_hash=prompt_hash(request), **prepared.versions.columns())
    frame["example_id"] = row_ids([frame["prompt_hash"], frame["image_sha256"],
                                   frame["digest"]])
    frame = frame[list(SFT_COLUMNS)].reset_index(drop=True)
    return Assembled(frame, log.counts(len(frame)))


def _sides(rows: pd.DataFrame, side: str) -> pd.DataFrame:
    keys = ["row", "trajectory_id", "raw_id", "text_id", "digest", "diagnosis"]
    return rows[["study_id", *keys]].rename(columns={key: f"{side}_{key}" for key in keys})


def cpo_pairs(prepared: PreparedTrajectories, request: str, *, cap: int | None = None,
              seed: int = 0) -> Assembled:
    """One pair per accepted counterfactual: chosen its study's factual, rejected itself."""
    rows = prepared.rows
    rejected = rows[rows["kind"] == COUNTERFACTUAL]
    log = FilterLog(len(rejected))
    rejected = log.drop("not accepted (rejected or dead letter)", rejected,
                        not_accepted(rejected))
    rejected = log.drop("no text", rejected, ~rejected["has_text"])
    factual = rows[(rows["kind"] == FACTUAL) & rows["has_text"]]
    pairs = _sides(rejected, "rejected").join(rejected[[
        "split", "has_image", "target_disease", "expert_backend", "expert_model",
        "expert_prompt_hash"]]).merge(_sides(factual, "chosen"), on="study_id", how="left")
    pairs = log.drop("no factual trajectory", pairs, pairs["chosen_row"].isna())
    pairs = log.drop("no image", pairs, ~pairs["has_image"])
    pairs = _in_split_order(pairs, "study_id", "target_disease")
    pairs = log.drop("chosen equals rejected (normalised)", pairs, same_text(pairs))
    pairs = log.drop("text also in validate or test", pairs, leaking_into_train(
        pairs, ["chosen_text_id", "rejected_text_id"], prepared.held_out))
    pairs = _drop_duplicates(log, pairs, ["chosen_raw_id", "rejected_raw_id"],
                             ["chosen_text_id", "rejected_text_id"])
    pairs = log.drop("over the per-disease cap", pairs,
                     over_cap(pairs, "chosen_diagnosis", cap, seed))
    frame = _with_images(pairs, prepared).assign(
        chosen=_texts(prepared, pairs["chosen_row"]).to_numpy(),
        rejected=_texts(prepared, pairs["rejected_row"]).to_numpy(),
        rejected_study_id=pairs["study_id"].to_numpy(), prompt=request,
        prompt_hash=prompt_hash(request), **prepared.versions.columns())
    return Assembled(_pair_table(frame), log.counts(len(frame)))


def _pair_table(pairs: pd.DataFrame) -> pd.DataFrame:
    """The declared columns, with `pair_id` the content hash of what a trainer sees: prompt,
    image, and the digests of chosen and rejected text."""
    pairs = pairs.assign(pair_id=row_ids([pairs["prompt_hash"], pairs["image_sha256"],
                                          pairs["chosen_digest"], pairs["rejected_digest"]]))
    return pairs[list(PAIR_COLUMNS)].reset_index(drop=True)


def _same_origin(pairs: pd.DataFrame, examples: pd.DataFrame) -> None:
    """Pairs and SFT examples from the same inputs and user turn, or an error saying which
    differs (a random-negative set mixing two versions would trace to neither)."""
    for column in ("prompt_hash", *VERSION_COLUMNS):
        found = set(pairs[column].unique()) | set(examples[column].unique())
        if len(found) > 1:
            raise ValueError(
                f"preference_pairs and sft_dataset differ in {column} ({sorted(found)}): "
                "materialize both from the same inputs and request before random_negative_pairs")


def random_negative_pairs(pairs: pd.DataFrame, examples: pd.DataFrame, *,
                          seed: int = 0) -> Assembled:
    """The DPO baseline: per CPO pair (same chosen, same image), rejected = the SFT answer of
    another study of the same split whose diagnosis differs, drawn uniformly with `seed`
    (with replacement); as many pairs as `pairs` unless a split has no other answer at all
    (counted). Deterministic for a seed and the same inputs. Another diagnosis means another
    answer line, so chosen and rejected always differ (the gate checks it)."""
    _same_origin(pairs, examples)
    log = FilterLog(len(pairs))
    pool = _in_split_order(examples[["split", "diagnosis", "study_id"]], "diagnosis",
                           "study_id").rename_axis("row").reset_index()
    order = _in_split_order(examples.assign(_row=np.arange(len(examples)))[
        ["split", "diagnosis", "study_id", "_row"]], "diagnosis", "study_id")["_row"]
    by_split = pool.groupby("split").agg(split_start=("row", "min"), split_size=("row", "size"))
    by_answer = pool.groupby(["split", "diagnosis"]).agg(answer_start=("row", "min"),
                                                        answer_size=("row", "size"))
    draw = pairs[["split", "chosen_diagnosis"]].reset_index(drop=True)
    draw = draw.join(by_split, on="split").join(by_answer, on=["split", "chosen_diagnosis"])
    split_start = draw["split_start"].fillna(0).to_numpy(np.int64)
    split_size = draw["split_size"].fillna(0).to_numpy(np.int64)
    answer_size = draw["answer_size"].fillna(0).to_numpy(np.int64)
    answer_start = draw["answer_start"].fillna(-1).to_numpy(np.int64)
    candidates = split_size - answer_size
    # Uniform over the split's rows less the contiguous block of the chosen's own answer: a
    # draw at or after the block's start skips over it.
    offset = np.floor(np.random.default_rng(seed).random(len(draw)) * candidates)
    position = split_start + offset.astype(np.int64)
    position = np.where((answer_size > 0) & (position >= answer_start),
                        position + answer_size, position)
    possible = candidates > 0
    log.drop("no study of another answer in the split", draw, ~possible)
    kept = pairs.iloc[np.flatnonzero(possible)].reset_index(drop=True)
    drawn = examples.iloc[order.to_numpy()[position[possible]]].reset_index(drop=True)
    frame = kept.assign(
        rejected=drawn["completion"], rejected_diagnosis=drawn["diagnosis"],
        rejected_trajectory_id=drawn["trajectory_id"], rejected_study_id=drawn["study_id"],
        target_disease=None, expert_backend=drawn["expert_backend"],
        expert_model=drawn["expert_model"], expert_prompt_hash=drawn["expert_prompt_hash"],
        chosen_digest=digests(kept["chosen"]), rejected_digest=digests(drawn["completion"]))
    return Assembled(_pair_table(frame), log.counts(len(frame)))


def diagnosis_only_pairs(pairs: pd.DataFrame) -> Assembled:
    """The "CPO without CoT" ablation: the CPO pairs with chosen and rejected cut to their
    answer lines, no thinking. Not deduplicated again: answer lines repeat across studies by
    design, and the pairs stay one-to-one with the CPO pairs (each has its own image)."""
    log = FilterLog(len(pairs))
    cut = pairs.reset_index(drop=True)
    cut = cut.assign(chosen=answers(cut["chosen"], cut)["answer"].to_numpy(),
                     rejected=answers(cut["rejected"], cut)["answer"].to_numpy())
    cut["chosen_text_id"], cut["rejected_text_id"] = text_ids(cut["chosen"], cut["rejected"])
    cut = log.drop("chosen equals rejected (normalised)", cut, same_text(cut))
    cut = cut.assign(chosen_digest=digests(cut["chosen"]), rejected_digest=digests(cut["rejected"]))
    return Assembled(_pair_table(cut), log.counts(len(cut)))

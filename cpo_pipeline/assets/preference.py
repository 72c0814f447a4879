"""sft_dataset, preference_pairs, random_negative_pairs, diagnosis_only_pairs: the training sets
of the paper's SFT and CPO stages, its random-negative DPO baseline and its no-CoT ablation.

Each is a Parquet table (the IO manager) and, under `<data_root>/datasets/<asset>/`, one Hugging
Face dataset per split in TRL's conversational vision format with its dataset card. The
assembly, filters and gates are `cpo_pipeline.preference`; this module wires them in. The
baseline and the ablation are built from `preference_pairs` (and `sft_dataset`), so all three
share the same chosen side, user turn and inputs.
"""

from dataclasses import replace

import dagster as dg
import pandas as pd
from pydantic import Field

from cpo_pipeline import data_layout
from cpo_pipeline.counterfactuals.bounds import bounds_description, gate_description
from cpo_pipeline.preference import assembly
from cpo_pipeline.preference.assembly import VERSION_COLUMNS, Assembled, InputVersions
from cpo_pipeline.preference.card import PAIR_COLUMNS, SFT_COLUMNS, dataset_card, rows_per_split
from cpo_pipeline.preference.checks import (
    GateResult,
    PairGateBounds,
    chosen_differs_from_rejected,
    images_match,
    no_patient_in_two_splits,
    no_test_study_in_training,
    pairs_are_hard_negatives,
)
from cpo_pipeline.preference.export import export_set
from cpo_pipeline.preference.prompt import DEFAULT_REQUEST, prompt_hash
from cpo_pipeline.resources.settings import PipelineSettings
from cpo_pipeline.schemas import content_version
from cpo_pipeline.wiring.launchpad import Offered, launchpad_config
from cpo_pipeline.wiring.metadata import sample_table

PREFERENCE_VERSION = "1"
_GROUP = "preference"
_LONG_COLUMNS = ["prompt", "image_path", *VERSION_COLUMNS]

_CHECKS = {
    "no_patient_in_two_splits": "No patient has rows in more than one split.",
    "images_exist_and_match_sha256": "Every referenced image exists and has the recorded sha256 "
    "(each distinct image hashed once).",
    "no_test_study_in_training_set": "No train row is built from a test-split study "
    "(cxr_studies), on either side of a pair.",
    "chosen_differs_from_rejected": "No pair's chosen and rejected texts normalise alike.",
    "pairs_are_hard_negatives": f"On a seeded sample of at most `gate_sample` (default "
    f"{PairGateBounds().sample:,}) train pairs: "
    + gate_description(PairGateBounds(), "rejected", "chosen") + ".",
}
# What a failing invariant gate adds to its figure: the bound (0) and why no config option of
# the set relaxes it, so the user knows where to look instead.
_INVARIANT_BOUNDS = {
    "no_patient_in_two_splits": "the bound is 0, and no config option relaxes it (the set "
    "takes its splits from cxr_studies, whose own check should have stopped a leak): "
    "re-materialize cxr_studies",
    "images_exist_and_match_sha256": "the bound is 0, and no config option relaxes it: the "
    "image store changed after cxr_images was written; re-materialize cxr_images, then this set",
    "no_test_study_in_training_set": "the bound is 0, and no config option relaxes it: a test "
    "study in training invalidates the evaluation",
    "chosen_differs_from_rejected": "the bound is 0, and no config option relaxes it: a pair "
    "that prefers a text over itself teaches nothing; see the verifier options "
    "(`min_edit_tokens`, run config of counterfactual_trajectories)",
}
_PAIR_CHECKS = ("no_patient_in_two_splits", "images_exist_and_match_sha256",
                "no_test_study_in_training_set", "chosen_differs_from_rejected")
_CHECK_NAMES = {
    "sft_dataset": ("no_patient_in_two_splits", "images_exist_and_match_sha256",
                    "no_test_study_in_training_set"),
    "preference_pairs": (*_PAIR_CHECKS, "pairs_are_hard_negatives"),
    "random_negative_pairs": _PAIR_CHECKS,
    "diagnosis_only_pairs": _PAIR_CHECKS,
}


def _specs(asset: str, names: tuple[str, ...]) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(name, asset=asset, blocking=True, description=_CHECKS[name])
            for name in names]


class TrainingSetConfig(dg.Config):
    request: str = Field(
        default=DEFAULT_REQUEST,
        description="The user turn's request beside the radiograph (our own wording of the "
        "paper's; stored with its hash on every row). Give sft_dataset and preference_pairs "
        "the same request.")
    per_disease_cap: int | None = Field(
        default=None,
        description="At most this many train rows per study answer (e.g. 'No Finding'), drawn "
        "with `seed`; validate and test keep their natural mix. None: no cap.")
    seed: int = Field(default=0, description="Seed of the per-disease cap's draw.")


# The hard-negative gate's bounds with their defaults and help (its length bounds stay fixed;
# its sample is drawn with the set's `seed`).
_GATE = Offered(PairGateBounds,
                leave_out=frozenset({"length_ratio", "max_longer_share", "seed"}),
                rename={"confidence_z": "style_confidence_z", "sample": "gate_sample"})
PairsConfig = launchpad_config("PairsConfig", _GATE, base=TrainingSetConfig)


class RandomNegativeConfig(dg.Config):
    seed: int = Field(default=0, description="Seed of the draw of each pair's random negative.")


def _versions(trajectories: pd.DataFrame, studies: pd.DataFrame,
              images: pd.DataFrame) -> InputVersions:
    return InputVersions(content_version(trajectories, "counterfactual_trajectories"),
                         content_version(studies, "cxr_studies"),
                         content_version(images, "cxr_images"))


def _gates(name: str, frame: pd.DataFrame, studies: pd.DataFrame) -> dict[str, GateResult]:
    """The gates every set shares (`_CHECK_NAMES`); the hard-negative gate is the pairs'."""
    gates = {
        "no_patient_in_two_splits": no_patient_in_two_splits(frame),
        "images_exist_and_match_sha256": images_match(frame),
        "no_test_study_in_training_set": no_test_study_in_training(
            frame, studies.set_index("study_id")["split"]),
    }
    if name != "sft_dataset":
        gates["chosen_differs_from_rejected"] = chosen_differs_from_rejected(frame)
    return gates


def _check_value(value: object) -> object:
    return dg.MetadataValue.json(value) if isinstance(value, list | dict) else value


def _materialize(
    context: dg.AssetExecutionContext, name: str, summary: str, assembled: Assembled,
    studies: pd.DataFrame, settings: PipelineSettings, lineage: dict[str, object],
    gates: dict[str, GateResult],
) -> dg.MaterializeResult:
    """Export the set and its card, and report it: counts, filters, card, sample, gates."""
    frame = assembled.frame
    columns = SFT_COLUMNS if name == "sft_dataset" else PAIR_COLUMNS
    card = dataset_card(name, summary, frame, assembled.filters, lineage, columns)
    data_root = settings.data_root_path()
    paths = export_set(frame, name, data_root, card)
    gates = {check: replace(gate, description=f"{gate.description}; {_INVARIANT_BOUNDS[check]}")
             for check, gate in _gates(name, frame, studies).items()} | gates
    for check, gate in gates.items():
        if not gate.passed:
            context.log.error(f"{name}: {check} failed: {gate.description}")
    return dg.MaterializeResult(
        value=frame,
        data_version=dg.DataVersion(content_version(frame, name)),
        metadata={
            "rows_per_split": dg.MetadataValue.json(rows_per_split(frame)),
            "filters": dg.MetadataValue.json(assembled.filters),
            "dataset_card": dg.MetadataValue.md(card),
            "datasets": dg.MetadataValue.path(str(data_layout.dataset(data_root, name))),
            "dataset_splits": dg.MetadataValue.json({s: str(p) for s, p in paths.items()}),
            "prompt_hash": str(lineage["prompt_hash"]),
            "sample": sample_table(frame.drop(columns=_LONG_COLUMNS)),
        },
        check_results=[
            dg.AssetCheckResult(check_name=check, passed=gate.passed,
                                description=gate.description,
                                metadata={k: _check_value(v) for k, v in gate.metadata.items()})
            for check, gate in gates.items()
        ],
    )


def _lineage(versions: InputVersions, request: str, **parameters: object) -> dict[str, object]:
    return {**versions.columns(), "prompt_hash": prompt_hash(request), "request": request,
            **parameters, "code_version": PREFERENCE_VERSION}


@dg.asset(
    group_name=_GROUP,
    code_version=PREFERENCE_VERSION,
    check_specs=_specs("sft_dataset", _CHECK_NAMES["sft_dataset"]),
    description="SFT stage: one example per study with an image — the radiograph, the user "
    "turn, and the factual trajectory as the answer; deduplicated, leak-free across splits; "
    "Hugging Face datasets per split under <data_root>/datasets/sft_dataset.",
)
def sft_dataset(
    context: dg.AssetExecutionContext, config: TrainingSetConfig,
    counterfactual_trajectories: pd.DataFrame, cxr_studies: pd.DataFrame,
    cxr_images: pd.DataFrame, settings: PipelineSettings,
):
    versions = _versions(counterfactual_trajectories, cxr_studies, cxr_images)
    prepared = assembly.prepare(counterfactual_trajectories, cxr_studies, cxr_images, versions)
    assembled = assembly.sft_examples(prepared, config.request, cap=config.per_disease_cap,
                                      seed=config.seed)
    return _materialize(
        context, "sft_dataset",
        "Supervised fine-tuning set: per study, the chest radiograph and the request to "
        "determine the disease, answered with the study's factual reasoning trajectory.",
        assembled, cxr_studies, settings,
        _lineage(versions, config.request, per_disease_cap=config.per_disease_cap,
                 seed=config.seed), {})


@dg.asset(
    group_name=_GROUP,
    code_version=PREFERENCE_VERSION,
    check_specs=_specs("preference_pairs", _CHECK_NAMES["preference_pairs"]),
    description="CPO pairs: chosen = the factual trajectory, rejected = an accepted "
    "counterfactual trajectory of the same study and image, one pair per accepted "
    "counterfactual; filtered, gated as hard negatives; datasets under "
    "<data_root>/datasets/preference_pairs.",
)
def preference_pairs(
    context: dg.AssetExecutionContext, config: PairsConfig,
    counterfactual_trajectories: pd.DataFrame, cxr_studies: pd.DataFrame,
    cxr_images: pd.DataFrame, settings: PipelineSettings,
):
    versions = _versions(counterfactual_trajectories, cxr_studies, cxr_images)
    prepared = assembly.prepare(counterfactual_trajectories, cxr_studies, cxr_images, versions)
    assembled = assembly.cpo_pairs(prepared, config.request, cap=config.per_disease_cap,
                                   seed=config.seed)
    bounds = _GATE.build(config, seed=config.seed)
    hardness = pairs_are_hard_negatives(assembled.frame, bounds)
    hardness = replace(hardness, description=f"{hardness.description}; "
                       + bounds_description(bounds, "preference_pairs", "rejected"))
    return _materialize(
        context, "preference_pairs",
        "Counterfactual preference pairs (CPO): per accepted counterfactual, the study's "
        "radiograph and user turn, chosen = its factual trajectory, rejected = the "
        "counterfactual trajectory toward another disease.",
        assembled, cxr_studies, settings,
        _lineage(versions, config.request, per_disease_cap=config.per_disease_cap,
                 seed=config.seed),
        {"pairs_are_hard_negatives": hardness})


def _pair_lineage(pairs: pd.DataFrame, **parameters: object) -> dict[str, object]:
    """The lineage a derived set inherits from preference_pairs' rows (all alike)."""
    first = pairs.iloc[0] if len(pairs) else pd.Series(dtype=object)
    return {**{column: first.get(column) for column in (*VERSION_COLUMNS, "prompt_hash")},
            "request": first.get("prompt"), **parameters, "code_version": PREFERENCE_VERSION}


@dg.asset(
    group_name=_GROUP,
    code_version=PREFERENCE_VERSION,
    check_specs=_specs("random_negative_pairs", _CHECK_NAMES["random_negative_pairs"]),
    description="The paper's DPO baseline: each CPO pair's chosen and image, rejected = the "
    "factual trajectory of another study of the same split with a different diagnosis "
    "(seeded); as many pairs as preference_pairs.",
)
def random_negative_pairs(
    context: dg.AssetExecutionContext, config: RandomNegativeConfig,
    preference_pairs: pd.DataFrame, sft_dataset: pd.DataFrame, cxr_studies: pd.DataFrame,
    settings: PipelineSettings,
):
    assembled = assembly.random_negative_pairs(preference_pairs, sft_dataset, seed=config.seed)
    return _materialize(
        context, "random_negative_pairs",
        "Random-negative pairs (the DPO baseline): the CPO pairs' radiograph, user turn and "
        "chosen trajectory; rejected = another study's factual trajectory from the same split "
        "with a different diagnosis.",
        assembled, cxr_studies, settings, _pair_lineage(preference_pairs, seed=config.seed), {})


@dg.asset(
    group_name=_GROUP,
    code_version=PREFERENCE_VERSION,
    check_specs=_specs("diagnosis_only_pairs", _CHECK_NAMES["diagnosis_only_pairs"]),
    description="The paper's 'CPO without CoT' ablation: the CPO pairs with chosen and "
    "rejected cut to their answer lines ('The disease of this patient is X.'), no thinking.",
)
def diagnosis_only_pairs(
    context: dg.AssetExecutionContext, preference_pairs: pd.DataFrame,
    cxr_studies: pd.DataFrame, settings: PipelineSettings,
):
    assembled = assembly.diagnosis_only_pairs(preference_pairs)
    return _materialize(
        context, "diagnosis_only_pairs",
        "Diagnosis-only pairs (the no-CoT ablation): the CPO pairs' radiograph and user turn; "
        "chosen and rejected are only the answer lines of the factual and the counterfactual "
        "trajectory.",
        assembled, cxr_studies, settings, _pair_lineage(preference_pairs), {})

"""model_evaluation: every trained model on the held-out studies, side by side (issue 12).

For each model asset that has materialized (`sft_model`, `cpo_model`, `dpo_random_model`,
`cpo_no_cot_model`, `sft_continued_model`): greedy answers on the test split of `sft_dataset`
(or its validate split, `split`, for choosing), the answer-line likelihood of each label after
the model's own thinking, the synonym-swap probe, and on the same split's `preference_pairs`
the reward of chosen over rejected against the
model's reference (sft_model for the DPO stages) and where factual and counterfactual thinking
lead. `evaluation.report` turns these into the report: the paper's layout with its published
numbers beside ours, AUCs, clinical efficacy, NLG, probes. Written under
`<data_root>/evaluation/<key>/` (the key: the models' data versions, the test set, the config),
so a re-run with unchanged models and config reuses the last report. torch is imported only
when the asset runs, never when the code server loads this module.
"""


import json
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import Field

from cpo_pipeline.evaluation.classification import (
    AVERAGE_FIVE,
    BALANCED_FIVE,
    EXACT,
    MACRO_F1_ALL,
    MACRO_F1_FIVE,
    PARSE_RATE,
)
from cpo_pipeline.evaluation.runner import (
    GENERATIONS,
    REPORT,
    ModelUnderTest,
    TestTruth,
    held_out_pairs,
    report_folder,
    score_models,
    split_note,
    write_file,
    write_tables,
)
from cpo_pipeline.resources.settings import PipelineSettings
from cpo_pipeline.training import run_dirs
from cpo_pipeline.training.config import TINY_MODEL
from cpo_pipeline.wiring.evaluation import leakage_check, scoring_config, test_studies
from cpo_pipeline.wiring.metadata import png_markdown

# "2": the answer-line figures (macro-F1, balanced accuracy, exact, parse rate) and the floor.
EVALUATION_VERSION = "2"
MODELS = ("sft_model", "cpo_model", "dpo_random_model", "cpo_no_cot_model",
          "sft_continued_model")
_REFERENCE = {"cpo_model": "sft_model", "dpo_random_model": "sft_model",
              "cpo_no_cot_model": "sft_model", "sft_continued_model": "sft_model"}


EvaluationConfig = scoring_config(
    "EvaluationConfig",
    ("max_new_tokens", "batch_size", "resamples", "seed", "max_pairs", "probe_studies", "meteor",
     "split"),
    models=(list[str], Field(
        default_factory=lambda: list(MODELS),
        description="Which model assets to evaluate (those not materialized are skipped and "
        "named in the report).")),
    study_ids=(list[int], Field(
        default_factory=list,
        description="Evaluate only these test studies (e.g. MS-CXR-T's); empty: all of them.")),
    dicom_ids=(list[str], Field(
        default_factory=list,
        description="Evaluate only the test studies of these images; empty: all of them.")),
    include_base=(bool, Field(
        default=False,
        description="Also evaluate the untuned model sft_model started from, as 'base_model'.")),
)


@dg.asset(
    group_name="evaluation",
    code_version=EVALUATION_VERSION,
    deps=[*MODELS, "sft_dataset", "preference_pairs"],
    kinds={"pytorch"},
    check_specs=[dg.AssetCheckSpec(
        "evaluation_sees_no_training_data", asset="model_evaluation", blocking=True,
        description="No test study, and no patient of one, is in any training split.")],
    description="Every trained model on the test split, side by side: answer-line macro-F1 "
    "and balanced accuracy (the five, all 13), exact answers and the parse rate beside the "
    "all-'No Finding' floor; per-disease accuracy with patient-bootstrap CIs (the paper's "
    "published numbers beside), likelihood AUCs, "
    "clinical efficacy, BLEU/ROUGE-L/METEOR/CIDEr, preference rewards and drift probes; "
    "a markdown report under <data_root>/evaluation/.",
)
def model_evaluation(context: dg.AssetExecutionContext, config: EvaluationConfig,
                     settings: PipelineSettings, cxr_studies: pd.DataFrame):
    data_root = settings.data_root_path()
    test = test_studies(data_root, config.split)
    if config.study_ids:
        wanted = set(config.study_ids)
        test = [row for row in test if row["study_id"] in wanted]
    if config.dicom_ids:
        images = set(config.dicom_ids)
        test = [row for row in test if row["dicom_id"] in images]
    if not test:
        raise dg.Failure(description="no test studies to evaluate: check `study_ids` and "
                         "`dicom_ids` (the test split of sft_dataset has none of them)")
    check = leakage_check(data_root, test, "evaluation_sees_no_training_data")

    models = {}
    for name in config.models:
        current = run_dirs.read_current(data_root, name)
        if current is not None:
            models[name] = (run_dirs.model_dir(current[0]), current[1])
    skipped = [name for name in config.models if name not in models]
    if config.include_base:
        base = _base_model(data_root)
        if base is None:
            skipped.append("base_model")
        else:
            models = {"base_model": base, **models}
    key, folder = report_folder(data_root, [
        EVALUATION_VERSION, config.model_dump(),
        {name: version for name, (_, version) in models.items()},
        [row["study_id"] for row in test]])
    if (folder / REPORT).is_file() and not config.force:
        context.log.info(f"models and config unchanged: reusing {folder / REPORT}")
        return _result(folder, key, skipped, reused=True, check=check)
    _evaluate(context, config, data_root, test, models, skipped, cxr_studies, folder)
    return _result(folder, key, skipped, reused=False, check=check)


def _evaluate(context, config: EvaluationConfig, data_root: Path, test: list[dict],
              models: dict, skipped: list[str], cxr_studies: pd.DataFrame, folder: Path) -> None:
    from cpo_pipeline.evaluation.plots import accuracy_png
    from cpo_pipeline.evaluation.report import FloorFigures, figures_summary, report_markdown

    under_test = [ModelUnderTest(name, model_dir,
                                 models.get(_REFERENCE.get(name, ""), (None, None))[0])
                  for name, (model_dir, _) in models.items()]
    truth = TestTruth.of(test, cxr_studies)
    scored = score_models(under_test, test,
                          held_out_pairs(data_root, config.max_pairs, config.split),
                          truth, config.options(), context.log.info)
    figures = {s.model.name: s.figures for s in scored}
    floor = FloorFigures.of(truth.labels, [row["subject_id"] for row in test],
                            resamples=config.resamples, seed=config.seed)
    notes = [f"Not evaluated (not materialized): {', '.join(skipped)}."] if skipped else []
    if split_note(config.split):
        notes.insert(0, split_note(config.split))
    patients = len({row["subject_id"] for row in test})
    write_tables(folder, scored, "model")
    write_file(folder / "figures.json", figures_summary(
        figures, {s.model.name: s.objective.as_dict() for s in scored}))
    write_file(folder / FLOOR_FILE, json.dumps(floor.as_dict(), indent=1, default=float))
    write_file(folder / "accuracy.png", accuracy_png(figures))
    write_file(folder / REPORT, report_markdown(figures, studies=len(test), patients=patients,
                                                floor=floor, notes=notes))


FLOOR_FILE = "floor.json"
# The primary figures each model (and the floor) gets as metadata, by metadata key.
_PRIMARY_KEYS = {MACRO_F1_FIVE: "macro_f1_five", MACRO_F1_ALL: "macro_f1_all",
                 BALANCED_FIVE: "balanced_accuracy_five", EXACT: "exact_answer",
                 PARSE_RATE: "parse_rate"}


def _base_model(data_root: Path) -> tuple[Path | str, str] | None:
    """The model sft_model started from (its directory, or a hub id / path) and an identity,
    None when sft_model has not materialized."""
    current = run_dirs.read_current(data_root, "sft_model")
    summary = run_dirs.read_summary(current[0]) if current is not None else None
    if summary is None:
        return None
    base = summary["base_model"]
    if base == TINY_MODEL:  # built offline inside the run, next to the model
        return current[0] / "base_model", f"tiny-base:{current[1]}"
    return base, f"base:{base}"


def _result(folder: Path, key: str, skipped: list[str], *, reused: bool,
            check: dg.AssetCheckResult) -> dg.MaterializeResult:
    report = (folder / REPORT).read_text()
    summary = json.loads((folder / "figures.json").read_text())
    metadata: dict[str, object] = {
        "report": dg.MetadataValue.md(report),
        "report_path": dg.MetadataValue.path(str(folder / REPORT)),
        "generations": dg.MetadataValue.path(str(folder / GENERATIONS)),
        "reused": reused, "not_evaluated": skipped,
        "accuracy_plot": png_markdown((folder / "accuracy.png").read_bytes(),
                                      "per-disease accuracy"),
    }
    floor = json.loads((folder / FLOOR_FILE).read_text())
    for name, figures in [("floor", floor), *summary.items()]:
        primary = {row["label"]: row["value"] for row in figures["answer_metrics"]}
        for label, metadata_key in _PRIMARY_KEYS.items():
            metadata[f"{name}/{metadata_key}"] = primary[label]
        average = next(row for row in figures["accuracy"] if row["label"] == AVERAGE_FIVE)
        metadata[f"{name}/average_accuracy_five"] = average["accuracy"]
        if name == "floor":
            continue
        metadata[f"{name}/generation_tokens_per_s"] = figures["probes"].get("generation tokens/s")
        metadata[f"{name}/reward_beta"] = figures["objective"]["beta"]
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(key),
                                check_results=[check])

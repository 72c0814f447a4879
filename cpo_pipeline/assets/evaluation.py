"""model_evaluation: every trained model on the held-out studies, side by side (issue 12).

For each model asset that has materialized (`sft_model`, `cpo_model`, `dpo_random_model`,
`cpo_no_cot_model`): greedy answers on the test split of `sft_dataset`, the answer-line
likelihood of each label after the model's own thinking, the synonym-swap probe, and on the
held-out `preference_pairs` (validate and test) the reward of chosen over rejected against the
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

from cpo_pipeline.preference.export import dataset_dir
from cpo_pipeline.radiology.answer_format import parse_trajectory
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS
from cpo_pipeline.resources.settings import PipelineSettings
from cpo_pipeline.storage import atomic_target, content_hash
from cpo_pipeline.training import run_dirs
from cpo_pipeline.training.config import TINY_MODEL
from cpo_pipeline.wiring.metadata import png_markdown

EVALUATION_VERSION = "1"
MODELS = ("sft_model", "cpo_model", "dpo_random_model", "cpo_no_cot_model")
_REFERENCE = {"cpo_model": "sft_model", "dpo_random_model": "sft_model",
              "cpo_no_cot_model": "sft_model"}
EVALUATION_DIRNAME = "evaluation"


class ScoringConfig(dg.Config):
    """What every evaluation of models on the test studies shares (model_evaluation's and
    staged_evaluation's configs add what they score)."""

    max_new_tokens: int = Field(default=160, description="Greedy generation length.")
    batch_size: int = Field(default=8, description="Studies per generation batch.")
    beta: float = Field(default=0.1, description="DPO beta of the reported preference reward.")
    resamples: int = Field(default=1000, description="Patient-bootstrap resamples per interval.")
    seed: int = Field(default=0, description="Seed of the bootstrap resamples.")
    force: bool = Field(default=False, description="Evaluate again though nothing changed.")


class EvaluationConfig(ScoringConfig):
    models: list[str] = Field(
        default_factory=lambda: list(MODELS),
        description="Which model assets to evaluate (those not materialized are skipped and "
        "named in the report).")
    study_ids: list[int] = Field(
        default_factory=list,
        description="Evaluate only these test studies (e.g. MS-CXR-T's); empty: all of them.")
    dicom_ids: list[str] = Field(
        default_factory=list,
        description="Evaluate only the test studies of these images; empty: all of them.")
    max_pairs: int = Field(
        default=0,
        description="Score at most this many held-out preference pairs (a fixed subset, by "
        "pair id); 0: all of them. The pairs' probes cost the most per item.")
    include_base: bool = Field(
        default=False,
        description="Also evaluate the untuned model sft_model started from, as 'base_model'.")
    meteor: bool = Field(default=True, description="Compute METEOR (needs Java).")


def _rows(directory: Path) -> list[dict]:
    from datasets import load_from_disk

    return list(load_from_disk(str(directory))) if directory.is_dir() else []


def test_rows(data_root: Path) -> list[dict]:
    """The test split of sft_dataset: what every evaluation scores."""
    test = _rows(dataset_dir(data_root, "sft_dataset") / "test")
    if not test:
        raise dg.Failure(description="no test studies to evaluate: materialize sft_dataset "
                         "(its test split) first")
    return test


def leakage_check(data_root: Path, test: list[dict], name: str) -> dg.AssetCheckResult:
    """The blocking check that no test study, nor a patient of one, is in a training split;
    raises (with the figure, the bound and why no option relaxes it) when one is."""
    trained_studies, trained_patients = _training_ids(data_root)
    leaked = sorted({row["study_id"] for row in test} & trained_studies)
    leaked_patients = sorted({row["subject_id"] for row in test} & trained_patients)
    check = dg.AssetCheckResult(
        check_name=name, passed=not leaked and not leaked_patients,
        description=f"{len(leaked)} test studies and {len(leaked_patients)} test patients are "
        f"in a training split (e.g. {leaked[:3]} {leaked_patients[:3]}); the bound is 0, and no "
        "config option relaxes it: the splits come from cxr_studies, so re-materialize the "
        "training sets from it (sft_dataset, preference_pairs, random_negative_pairs, "
        "diagnosis_only_pairs), then the models",
        metadata={"leaked_studies": len(leaked), "leaked_patients": len(leaked_patients),
                  "bound": 0})
    if not check.passed:
        raise dg.Failure(description=check.description, metadata=check.metadata)
    return check


def held_out_pairs(data_root: Path, max_pairs: int) -> list[dict]:
    """The validate and test preference pairs, at most `max_pairs` of them (a fixed subset by
    pair id; 0: all)."""
    pairs_dir = dataset_dir(data_root, "preference_pairs")
    held_out = _rows(pairs_dir / "validate") + _rows(pairs_dir / "test")
    if max_pairs:
        held_out = sorted(held_out, key=lambda row: content_hash(row["pair_id"]))[:max_pairs]
    return held_out


def _training_ids(data_root: Path) -> tuple[set, set]:
    """Study and patient ids of every train split the models learned from."""
    studies, patients = set(), set()
    for name in ("sft_dataset", "preference_pairs", "random_negative_pairs",
                 "diagnosis_only_pairs"):
        train = dataset_dir(data_root, name) / "train"
        if train.is_dir():
            from datasets import load_from_disk

            split = load_from_disk(str(train))
            studies.update(split["study_id"])
            patients.update(split["subject_id"])
    return studies, patients


@dg.asset(
    group_name="evaluation",
    code_version=EVALUATION_VERSION,
    deps=[*MODELS, "sft_dataset", "preference_pairs"],
    kinds={"pytorch"},
    check_specs=[dg.AssetCheckSpec(
        "evaluation_sees_no_training_data", asset="model_evaluation", blocking=True,
        description="No test study, and no patient of one, is in any training split.")],
    description="Every trained model on the test split, side by side: per-disease accuracy "
    "with patient-bootstrap CIs (the paper's published numbers beside), likelihood AUCs, "
    "clinical efficacy, BLEU/ROUGE-L/METEOR/CIDEr, preference rewards and drift probes; "
    "a markdown report under <data_root>/evaluation/.",
)
def model_evaluation(context: dg.AssetExecutionContext, config: EvaluationConfig,
                     settings: PipelineSettings, cxr_studies: pd.DataFrame):
    data_root = settings.data_root_path()
    test = test_rows(data_root)
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
    key = content_hash([EVALUATION_VERSION, config.model_dump(),
                        {name: version for name, (_, version) in models.items()},
                        [row["study_id"] for row in test]])
    folder = data_root / EVALUATION_DIRNAME / key[:16]
    report_path = folder / "report.md"
    if report_path.is_file() and not config.force:
        context.log.info(f"models and config unchanged: reusing {report_path}")
        return _result(folder, key, skipped, reused=True, check=check)
    _evaluate(context, config, data_root, test, models, skipped, cxr_studies, folder)
    return _result(folder, key, skipped, reused=False, check=check)


def _evaluate(context, config: EvaluationConfig, data_root: Path, test: list[dict],
              models: dict, skipped: list[str], cxr_studies: pd.DataFrame, folder: Path) -> None:
    from cpo_pipeline.concepts.mentions import ConceptExtractor
    from cpo_pipeline.concepts.ontology import load_ontology
    from cpo_pipeline.evaluation.drift import synonym_pairs
    from cpo_pipeline.evaluation.evaluate import EvaluationOptions, evaluate_model
    from cpo_pipeline.evaluation.plots import accuracy_png
    from cpo_pipeline.evaluation.report import model_figures, report_markdown

    ontology = load_ontology()
    extractor = ConceptExtractor(ontology)
    held_out = held_out_pairs(data_root, config.max_pairs)
    labels = (cxr_studies.set_index("study_id").loc[[row["study_id"] for row in test],
                                                   list(CHEXPERT_LABELS)].reset_index(drop=True))
    findings = [parse_trajectory(row["messages"][-1]["content"]).findings for row in test]
    options = EvaluationOptions(max_new_tokens=config.max_new_tokens,
                                batch_size=config.batch_size, beta=config.beta)
    figures, answers = {}, []
    for name, (model_dir, _) in models.items():
        reference = models.get(_REFERENCE.get(name, ""), (None, None))[0]
        context.log.info(f"evaluating {name} on {len(test)} studies and {len(held_out)} pairs")
        evaluation = evaluate_model(model_dir, test, pairs=held_out, reference_dir=reference,
                                    synonym_pairs=synonym_pairs(ontology), options=options)
        figures[name] = model_figures(evaluation, labels, findings, ontology, extractor,
                                      resamples=config.resamples, seed=config.seed,
                                      meteor=config.meteor)
        answers.append(evaluation.answers.drop(columns=["error"]).assign(model=name))
    notes = [f"Not evaluated (not materialized): {', '.join(skipped)}."] if skipped else []
    patients = len({row["subject_id"] for row in test})
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_target(folder / "generations.parquet") as tmp:
        pd.concat(answers, ignore_index=True).to_parquet(tmp, index=False)
    summary = {name: {
        "accuracy": figure.accuracy.to_dict(orient="records"),
        "auc": figure.auc.to_dict(orient="records"),
        "efficacy": figure.efficacy.to_dict(orient="records"),
        "nlg": figure.nlg, "probes": figure.probes} for name, figure in figures.items()}
    with atomic_target(folder / "figures.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1, default=float))
    with atomic_target(folder / "accuracy.png") as tmp:
        tmp.write_bytes(accuracy_png(figures))
    with atomic_target(folder / "report.md") as tmp:
        tmp.write_text(report_markdown(figures, studies=len(test), patients=patients,
                                       notes=notes))


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
    report = (folder / "report.md").read_text()
    summary = json.loads((folder / "figures.json").read_text())
    metadata: dict[str, object] = {
        "report": dg.MetadataValue.md(report),
        "report_path": dg.MetadataValue.path(str(folder / "report.md")),
        "generations": dg.MetadataValue.path(str(folder / "generations.parquet")),
        "reused": reused, "not_evaluated": skipped,
        "accuracy_plot": png_markdown((folder / "accuracy.png").read_bytes(),
                                      "per-disease accuracy"),
    }
    for name, figures in summary.items():
        average = next(row for row in figures["accuracy"] if row["label"] == "average (five)")
        metadata[f"{name}/average_accuracy_five"] = average["accuracy"]
        metadata[f"{name}/generation_tokens_per_s"] = figures["probes"].get("generation tokens/s")
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(key),
                                check_results=[check])

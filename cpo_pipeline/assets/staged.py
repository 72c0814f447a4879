"""staged_training_sets, staged_models, staged_evaluation: tuning across time-ordered stages, the
non-stationary setting of the paper's title (job `staged_tuning`).

`cxr_studies.stage` (0..n-1, from each study's place in its patient's course) splits every
training set's train split into stages. SFT on stage 0 is the starting point; each method is
then tuned stage after stage, stage k starting from the method's model of stage k-1:
- `sft`: SFT continued on each later stage (its stage 0 is the starting point itself);
- `cpo`, `dpo_random`, `cpo_no_cot`: the DPO recipe on the stage's preference_pairs,
  random_negative_pairs or diagnosis_only_pairs, stage 0 starting from the stage-0 SFT model.
The DPO reference is the stage-0 SFT model (`reference: sft`, as the paper keeps its SFT model)
or the model the stage starts from (`reference: previous`). Every run goes through the same
launcher as the model assets (Pipes, keyed by content, reused when unchanged), under
`<data_root>/models/staged_models/`. `staged_evaluation` scores every model on every stage's
test studies (`evaluation.staged`: accuracy matrix, forgetting, backward transfer, the drift
probes' trajectory).
"""

import json
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from cpo_pipeline.assets.evaluation import (
    EVALUATION_DIRNAME,
    ScoringConfig,
    held_out_pairs,
    leakage_check,
    test_rows,
)
from cpo_pipeline.assets.preference import (
    diagnosis_only_pairs,
    preference_pairs,
    random_negative_pairs,
    sft_dataset,
)
from cpo_pipeline.assets.training import (
    GPU_POOL,
    DPOModelConfig,
    SFTModelConfig,
    StartingModel,
    TrainedRun,
    launch_training,
    policy_start,
    trained_start,
)
from cpo_pipeline.preference.export import dataset_dir
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS
from cpo_pipeline.resources.settings import PipelineSettings
from cpo_pipeline.storage import atomic_target, content_hash
from cpo_pipeline.training import run_dirs
from cpo_pipeline.training.config import DPO, SFT
from cpo_pipeline.wiring.metadata import png_markdown

STAGED_VERSION = "1"
# The evaluation's own: "2" added the No Finding floor and the exact-answer matrices.
STAGED_EVALUATION_VERSION = "2"
_GROUP = "staged"
_ASSET = "staged_models"
# Each method and the training set its stages take their rows from.
METHOD_SETS = {"sft": "sft_dataset", "cpo": "preference_pairs",
               "dpo_random": "random_negative_pairs", "cpo_no_cot": "diagnosis_only_pairs"}
REFERENCES = ("sft", "previous")
INITIAL = "sft (stage 0)"
_SHOWN_LABELS = ("No Finding", "Edema", "Pleural Effusion", "Cardiomegaly", "Consolidation",
                 "Pneumonia", "Pneumothorax")


def staged_dir(data_root: Path) -> Path:
    return dataset_dir(data_root, "staged")


def stage_split(data_root: Path, stage: int, dataset: str) -> Path:
    """The train rows of `dataset` whose study is in `stage`, as a Hugging Face dataset."""
    return staged_dir(data_root) / f"stage-{stage}" / dataset / "train"


def _manifest_path(data_root: Path, name: str) -> Path:
    return staged_dir(data_root) / name


def _read_json(path: Path, missing: str) -> dict:
    if not path.is_file():
        raise dg.Failure(description=f"{path} does not exist: {missing}")
    return json.loads(path.read_text())


def _write_json(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(path) as tmp:
        tmp.write_text(json.dumps(value, indent=1, default=float))


@dg.asset(
    group_name=_GROUP,
    code_version=STAGED_VERSION,
    deps=[sft_dataset, preference_pairs, random_negative_pairs, diagnosis_only_pairs],
    description="Each training set's train split cut by the studies' time-ordered `stage` "
    "(cxr_studies; `n_stages` in its run config), one Hugging Face dataset per stage under "
    "<data_root>/datasets/staged/, with the label mix per stage: what drifts between them.",
)
def staged_training_sets(context: dg.AssetExecutionContext, settings: PipelineSettings,
                         cxr_studies: pd.DataFrame) -> dg.MaterializeResult:
    from datasets import load_from_disk

    data_root = settings.data_root_path()
    stage_of = cxr_studies.set_index("study_id")["stage"]
    n_stages = int(stage_of.max()) + 1
    rows: dict[str, dict[int, int]] = {}
    for dataset in METHOD_SETS.values():
        source = dataset_dir(data_root, dataset) / "train"
        if not source.is_dir():
            raise dg.Failure(description=f"{source} does not exist: materialize {dataset} "
                             "first (a split without rows is not written)")
        split = load_from_disk(str(source))
        stages = stage_of.reindex(split["study_id"]).to_numpy()
        rows[dataset] = {}
        for stage in range(n_stages):
            chosen = np.flatnonzero(stages == stage)
            if len(chosen) == 0:
                raise dg.Failure(description=(
                    f"stage {stage} of {n_stages} has no train rows in {dataset} ({len(split)} "
                    "rows over all stages): lower `n_stages` in cxr_studies' run config "
                    "(ops: mimic_cxr_ingestion: config: n_stages), or ingest more studies"))
            target = stage_split(data_root, stage, dataset)
            staging = target.with_name(f".{target.name}.staging")
            target.parent.mkdir(parents=True, exist_ok=True)
            split.select(chosen).save_to_disk(str(staging))
            run_dirs.install_directory(staging, target)
            rows[dataset][stage] = len(chosen)
    test = cxr_studies[cxr_studies["split"] == "test"]
    train = cxr_studies[cxr_studies["split"] == "train"]
    mix = (train.groupby("stage")[list(_SHOWN_LABELS)].agg(lambda c: float((c == 1.0).mean()))
           .rename_axis("stage"))
    manifest = {"version": STAGED_VERSION, "stages": n_stages, "rows": rows,
                "test_studies": test["stage"].value_counts().sort_index().to_dict(),
                "fingerprints": {f"{stage}/{dataset}": run_dirs.directory_fingerprint(
                    stage_split(data_root, stage, dataset))
                    for dataset in METHOD_SETS.values() for stage in range(n_stages)}}
    _write_json(_manifest_path(data_root, "sets.json"), manifest)
    counts = pd.DataFrame(rows).rename_axis("stage")
    context.log.info(f"staged_training_sets: {n_stages} stages; train rows {rows}")
    return dg.MaterializeResult(
        metadata={
            "stages": n_stages,
            "train_rows_per_stage": dg.MetadataValue.md(counts.to_markdown()),
            "test_studies_per_stage": dg.MetadataValue.json(manifest["test_studies"]),
            "positive_share_per_stage": dg.MetadataValue.md(
                "Share of each stage's train studies positive for the finding:\n\n"
                + mix.round(3).to_markdown()),
            "path": dg.MetadataValue.path(str(staged_dir(data_root))),
        },
        data_version=dg.DataVersion(content_hash(manifest)))


class StagedModelsConfig(dg.Config):
    methods: list[str] = Field(
        default_factory=lambda: list(METHOD_SETS),
        description=f"Which methods to tune stage after stage: {', '.join(METHOD_SETS)}.")
    reference: str = Field(
        default="sft",
        description="The DPO reference of every stage: 'sft' (the stage-0 SFT model, as the "
        "paper keeps its SFT model) or 'previous' (the model the stage starts from).")
    sft: SFTModelConfig = Field(
        default_factory=SFTModelConfig,
        description="The SFT runs' config (stage 0 and the continued-SFT method).")
    dpo: DPOModelConfig = Field(
        default_factory=DPOModelConfig, description="The DPO runs' config (every DPO method).")


def _entry(data_root: Path, method: str, stage: int, trained: TrainedRun) -> dict:
    summary = trained.summary
    return {"method": method, "stage": stage,
            "run_dir": trained.run.relative_to(data_root).as_posix(),
            "data_version": trained.data_version, "reused": trained.reused,
            "rows": summary.get("dataset_rows"), "global_step": summary.get("global_step"),
            "train_loss": summary.get("metrics", {}).get("train_loss"),
            "train_runtime_s": summary.get("train_runtime_s")}


@dg.asset(
    group_name=_GROUP,
    code_version=STAGED_VERSION,
    pool=GPU_POOL,
    deps=[staged_training_sets],
    kinds={"pytorch"},
    description="SFT on stage 0, then each method (continued SFT, CPO, random-negative DPO, "
    "CPO without CoT) tuned stage after stage from its previous stage's model, the reference "
    "being the stage-0 SFT model or the previous model (`reference`). Each run is launched "
    "like the model assets' (Pipes; reused when its inputs and config are unchanged).",
)
def staged_models(context: dg.AssetExecutionContext, config: StagedModelsConfig,
                  settings: PipelineSettings,
                  pipes_subprocess_client: dg.PipesSubprocessClient) -> dg.MaterializeResult:
    unknown = sorted(set(config.methods) - set(METHOD_SETS))
    if unknown or not config.methods:
        raise dg.Failure(description=f"methods must be some of {list(METHOD_SETS)}, got "
                         f"{config.methods}")
    if config.reference not in REFERENCES:
        raise dg.Failure(description=f"reference must be one of {REFERENCES}, got "
                         f"{config.reference!r}")
    data_root = settings.data_root_path()
    sets = _read_json(_manifest_path(data_root, "sets.json"),
                      "materialize staged_training_sets first")
    n_stages = sets["stages"]

    def launch(method: str, stage: int, start: StartingModel,
               reference: StartingModel | None) -> TrainedRun:
        dataset = METHOD_SETS[method]
        kind = SFT if method == "sft" else DPO
        context.log.info(f"staged_models: {method} stage {stage + 1}/{n_stages} on {dataset}")
        return launch_training(
            context, _ASSET, kind, f"{dataset}@stage-{stage}",
            stage_split(data_root, stage, dataset), None,
            config.sft if kind == SFT else config.dpo, settings, pipes_subprocess_client,
            start, reference)

    first = launch("sft", 0, policy_start(settings), None)
    initial = trained_start(first.run, first.data_version)
    runs = {INITIAL: [_entry(data_root, "sft", 0, first)]}
    for method in config.methods:
        start, entries = initial, []
        for stage in range(n_stages):
            if method == "sft" and stage == 0:
                trained = first
            else:
                # The stage-0 run starts from the SFT model, its own reference either way.
                refer = initial if config.reference == "sft" and start is not initial else None
                trained = launch(method, stage, start, None if method == "sft" else refer)
            entries.append(_entry(data_root, method, stage, trained))
            start = trained_start(trained.run, trained.data_version)
        runs[method] = entries
    manifest = {"version": STAGED_VERSION, "stages": n_stages, "reference": config.reference,
                "runs": runs}
    _write_json(_manifest_path(data_root, "models.json"), manifest)
    table = pd.DataFrame([entry for entries in runs.values() for entry in entries])
    return dg.MaterializeResult(
        metadata={
            "runs": dg.MetadataValue.md(table.drop(columns=["run_dir", "data_version"])
                                        .to_markdown(index=False)),
            "trained_this_run": table.loc[~table["reused"], "run_dir"].nunique(),
            "reference": config.reference, "stages": n_stages,
            "manifest": dg.MetadataValue.path(str(_manifest_path(data_root, "models.json"))),
        },
        data_version=dg.DataVersion(content_hash(
            {name: [e["data_version"] for e in entries] for name, entries in runs.items()})))


class StagedEvaluationConfig(ScoringConfig):
    max_pairs: int = Field(
        default=100,
        description="Score at most this many held-out preference pairs per model (a fixed "
        "subset, by pair id) for the reward probes; 0: all of them.")
    probe_studies: int = Field(
        default=150,
        description="Run the per-study likelihood probes (synonym swaps, answer-line scores) on "
        "the first this many test studies of the split; 0: all. Accuracy always covers every "
        "test study; the probes cost a teacher-forced pass per study and candidate, per model.")
    batch_size: int = Field(default=16, description="Studies per generation batch.")
    resamples: int = Field(default=200, description="Patient-bootstrap resamples per interval.")


@dg.asset(
    group_name=_GROUP,
    code_version=STAGED_EVALUATION_VERSION,
    deps=[staged_models, sft_dataset, preference_pairs],
    kinds={"pytorch"},
    check_specs=[dg.AssetCheckSpec(
        "staged_evaluation_sees_no_training_data", asset="staged_evaluation", blocking=True,
        description="No test study, and no patient of one, is in any training split.")],
    description="Every staged model on every stage's test studies: the average-five and "
    "exact-answer matrices (after stage k x test stage j) per method beside the all-'No "
    "Finding' floor, forgetting and backward transfer, and the drift probes after each stage; "
    "a markdown report under <data_root>/evaluation/staged/.",
)
def staged_evaluation(context: dg.AssetExecutionContext, config: StagedEvaluationConfig,
                      settings: PipelineSettings, cxr_studies: pd.DataFrame):

    data_root = settings.data_root_path()
    manifest = _read_json(_manifest_path(data_root, "models.json"),
                          "materialize staged_models first")
    test = test_rows(data_root)
    check = leakage_check(data_root, test, "staged_evaluation_sees_no_training_data")
    models = {}  # data version -> model dir, each model once (sft's stage 0 is the initial one)
    for entries in manifest["runs"].values():
        for entry in entries:
            models[entry["data_version"]] = run_dirs.model_dir(data_root / entry["run_dir"])
    # Keyed on which models (by content) fill which cells, not on how the manifest came about
    # (a run reused rather than trained is the same model).
    cells = {method: [(e["stage"], e["data_version"]) for e in entries]
             for method, entries in manifest["runs"].items()}
    key = content_hash([STAGED_EVALUATION_VERSION, config.model_dump(), manifest["reference"],
                        cells, [row["study_id"] for row in test]])
    folder = data_root / EVALUATION_DIRNAME / "staged" / key[:16]
    if not (folder / "report.md").is_file() or config.force:
        _evaluate_staged(context, config, data_root, manifest, models, test, cxr_studies,
                         folder)
    else:
        context.log.info(f"staged models and config unchanged: reusing {folder / 'report.md'}")
    summary = json.loads((folder / "staged.json").read_text())
    metadata: dict[str, object] = {
        "report": dg.MetadataValue.md((folder / "report.md").read_text()),
        "report_path": dg.MetadataValue.path(str(folder / "report.md")),
        "accuracy_plot": png_markdown((folder / "accuracy_by_stage.png").read_bytes(),
                                      "accuracy after each stage"),
    }
    for method, figures in summary["methods"].items():
        metadata[f"{method}/final_mean_accuracy"] = figures["final_mean"]
        metadata[f"{method}/forgetting"] = figures["forgetting"]
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(key),
                                check_results=[check])


def _evaluate_staged(context, config: StagedEvaluationConfig, data_root: Path, manifest: dict,
                     models: dict[str, Path], test: list[dict], cxr_studies: pd.DataFrame,
                     folder: Path) -> None:
    from cpo_pipeline.concepts.mentions import ConceptExtractor
    from cpo_pipeline.concepts.ontology import load_ontology
    from cpo_pipeline.evaluation.classification import AVERAGE_FIVE, EXACT, reference_answers
    from cpo_pipeline.evaluation.drift import synonym_pairs
    from cpo_pipeline.evaluation.evaluate import EvaluationOptions, evaluate_model
    from cpo_pipeline.evaluation.plots import staged_png
    from cpo_pipeline.evaluation.report import model_figures
    from cpo_pipeline.evaluation.staged import (
        TRAJECTORY_PROBES,
        accuracy_by_stage,
        backward_transfer,
        forgetting,
        no_finding_floor,
        stage_matrix,
        staged_markdown,
    )
    from cpo_pipeline.radiology.answer_format import parse_trajectory

    ontology = load_ontology()
    extractor = ConceptExtractor(ontology)
    studies = cxr_studies.set_index("study_id")
    ids = [row["study_id"] for row in test]
    labels = studies.loc[ids, list(CHEXPERT_LABELS)].reset_index(drop=True)
    reference = reference_answers(labels)
    test_stages = studies.loc[ids, "stage"].to_numpy()
    findings = [parse_trajectory(row["messages"][-1]["content"]).findings for row in test]
    pairs = held_out_pairs(data_root, config.max_pairs)
    options = EvaluationOptions(max_new_tokens=config.max_new_tokens,
                                batch_size=config.batch_size, beta=config.beta,
                                probe_studies=config.probe_studies or None)
    initial_dir = run_dirs.model_dir(data_root / manifest["runs"][INITIAL][0]["run_dir"])
    scored, answers = {}, []
    for number, (version, model_dir) in enumerate(models.items(), 1):
        context.log.info(f"staged_evaluation: model {number}/{len(models)} on {len(test)} "
                         f"studies and {len(pairs)} pairs")
        evaluation = evaluate_model(model_dir, test, pairs=pairs, reference_dir=initial_dir,
                                    synonym_pairs=synonym_pairs(ontology), options=options)
        figures = model_figures(evaluation, labels, findings, ontology, extractor,
                                resamples=config.resamples, seed=config.seed, meteor=False)
        by_stage = accuracy_by_stage(evaluation.answers, reference, test_stages,
                                     resamples=config.resamples, seed=config.seed)
        scored[version] = (by_stage, {name: figures.probes.get(name)
                                      for name in TRAJECTORY_PROBES})
        answers.append(evaluation.answers.drop(columns=["error"]).assign(model_version=version))
    initial_version = manifest["runs"][INITIAL][0]["data_version"]
    matrices, probes, methods = {}, {}, {}
    exact = {"sft (stage 0)": stage_matrix({0: scored[initial_version][0]}, EXACT)}
    for method, entries in manifest["runs"].items():
        if method == INITIAL:
            continue
        per_stage = {e["stage"]: scored[e["data_version"]][0] for e in entries}
        matrices[method] = stage_matrix(per_stage)
        exact[method] = stage_matrix(per_stage, EXACT)
        probes[method] = {e["stage"]: scored[e["data_version"]][1] for e in entries}
        matrix = matrices[method]
        methods[method] = {"matrix": _nested(matrix),
                           "final_mean": float(matrix.iloc[-1].mean()),
                           "forgetting": forgetting(matrix),
                           "backward_transfer": backward_transfer(matrix),
                           "exact_matrix": _nested(exact[method]),
                           "probes": probes[method],
                           "per_stage": {e["stage"]: per_stage[e["stage"]].to_dict("records")
                                         for e in entries}}
    initial_table = stage_matrix({0: scored[initial_version][0]}).iloc[0]
    floor_rows = no_finding_floor(reference, test_stages, [row["subject_id"] for row in test],
                                  resamples=config.resamples, seed=config.seed)
    floor = floor_rows[floor_rows["label"].isin([AVERAGE_FIVE, EXACT])].pivot(
        index="label", columns="test_stage", values="accuracy")
    test_counts = pd.Series(test_stages).value_counts().sort_index()
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_target(folder / "generations.parquet") as tmp:
        pd.concat(answers, ignore_index=True).to_parquet(tmp, index=False)
    with atomic_target(folder / "staged.json") as tmp:
        tmp.write_text(json.dumps({
            "reference": manifest["reference"], "stages": manifest["stages"],
            "test_studies": {int(k): int(v) for k, v in test_counts.items()},
            "initial": {int(j): float(v) for j, v in initial_table.items()},
            "initial_probes": scored[initial_version][1], "methods": methods,
            "initial_exact": _nested(exact["sft (stage 0)"])[0],
            "floor": {label: {int(j): float(v) for j, v in row.items()}
                      for label, row in floor.iterrows()},
            "floor_per_stage": floor_rows.to_dict("records"),
        }, indent=1, default=float))
    with atomic_target(folder / "accuracy_by_stage.png") as tmp:
        tmp.write_bytes(staged_png(matrices, initial_table))
    with atomic_target(folder / "report.md") as tmp:
        tmp.write_text(staged_markdown(
            matrices, initial_table, probes, reference=manifest["reference"],
            test_studies={int(k): int(v) for k, v in test_counts.items()},
            floor=floor, exact=exact))


def _nested(matrix: pd.DataFrame) -> dict[int, dict[int, float]]:
    return {int(k): {int(j): float(v) for j, v in row.items()} for k, row in matrix.iterrows()}


STAGED_ASSETS = (staged_training_sets, staged_models, staged_evaluation)

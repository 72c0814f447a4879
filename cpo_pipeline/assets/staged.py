"""staged_training_sets, staged_models, staged_evaluation: tuning across time-ordered stages, the
non-stationary setting of the paper's title (job `staged_tuning`).

`cxr_studies.stage` (0..n-1, from each study's place in its patient's course) splits every
training set's train split into stages. SFT on stage 0 is the starting point; each method is
then tuned stage after stage, stage k starting from the method's model of stage k-1:
- `sft`: SFT continued on each stage's SFT rows. Step-matched to CPO when `cpo` is tuned too
  and the continued-SFT config leaves `max_steps` at -1: every stage, stage 0 included, takes
  as many optimizer steps as that stage's CPO run (the control sft_continued_model is for the
  unstaged models). Otherwise its stage 0 is the starting point itself and later stages train
  for the config's epochs or `max_steps`;
- `cpo`, `dpo_random`, `cpo_no_cot`: the DPO recipe on the stage's preference_pairs,
  random_negative_pairs or diagnosis_only_pairs, stage 0 starting from the stage-0 SFT model.
Each method can have its own config (`continued_sft`, `cpo`, `dpo_random`, `cpo_no_cot`; unset,
`sft` or `dpo`): the learning rate and NLL weight a protocol selected per method.
The DPO reference is the stage-0 SFT model (`reference: sft`, as the paper keeps its SFT model)
or the model the stage starts from (`reference: previous`). Every run goes through the same
launcher as the model assets (Pipes, keyed by content, reused when unchanged), under
`<data_root>/models/staged_models/`. `staged_evaluation` scores every model on every stage's
test studies (`evaluation.staged`: accuracy matrix, forgetting, backward transfer, the drift
probes' trajectory).
"""

import json
from dataclasses import replace
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from cpo_pipeline import data_layout
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
from cpo_pipeline.evaluation.staged import INITIAL, staged_figures
from cpo_pipeline.resources.settings import PipelineSettings
from cpo_pipeline.storage import atomic_target, content_hash
from cpo_pipeline.training import run_dirs
from cpo_pipeline.training.config import DPO, SFT
from cpo_pipeline.training.launch import StartingModel, policy_start, trained_start
from cpo_pipeline.wiring.evaluation import leakage_check, scoring_config, test_studies
from cpo_pipeline.wiring.metadata import png_markdown
from cpo_pipeline.wiring.training_launch import (
    GPU_POOL,
    DPOModelConfig,
    SFTModelConfig,
    TrainedRun,
    launch_training,
)

# "2": the continued-SFT method step-matched to CPO, per-method configs.
STAGED_VERSION = "2"
# The evaluation's own: "2" added the No Finding floor and the exact-answer matrices, "3" the
# macro-F1 (five) and parse-rate matrices and answer lines alone parsing as answers.
STAGED_EVALUATION_VERSION = "3"
_GROUP = "staged"
_ASSET = "staged_models"
# Each method and the training set its stages take their rows from.
METHOD_SETS = {"sft": "sft_dataset", "cpo": "preference_pairs",
               "dpo_random": "random_negative_pairs", "cpo_no_cot": "diagnosis_only_pairs"}
REFERENCES = ("sft", "previous")
_SHOWN_LABELS = ("No Finding", "Edema", "Pleural Effusion", "Cardiomegaly", "Consolidation",
                 "Pneumonia", "Pneumothorax")


def stage_split(data_root: Path, stage: int, dataset: str) -> Path:
    """The train rows of `dataset` whose study is in `stage`, as a Hugging Face dataset."""
    return data_layout.staged_datasets(data_root) / f"stage-{stage}" / dataset / "train"


def _manifest_path(data_root: Path, name: str) -> Path:
    return data_layout.staged_datasets(data_root) / name


def _read_json(data_root: Path, path: Path, missing: str) -> dict:
    if not path.is_file():
        moved = data_layout.moved_staged_datasets(data_root)
        raise dg.Failure(description=moved or f"{path} does not exist: {missing}")
    return json.loads(path.read_text())


def _write_json(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(path) as tmp:
        tmp.write_text(json.dumps(value, indent=1, default=float))


@dg.asset(
    group_name=_GROUP,
    code_version=STAGED_VERSION,
    deps=list(METHOD_SETS.values()),
    description="Each training set's train split cut by the studies' time-ordered `stage` "
    "(cxr_studies; `n_stages` in its run config), one Hugging Face dataset per stage under "
    f"<data_root>/{data_layout.STAGED_DATASETS}/, with the label mix per stage: what drifts "
    "between them.",
)
def staged_training_sets(context: dg.AssetExecutionContext, settings: PipelineSettings,
                         cxr_studies: pd.DataFrame) -> dg.MaterializeResult:
    from datasets import load_from_disk

    data_root = settings.data_root_path()
    stage_of = cxr_studies.set_index("study_id")["stage"]
    n_stages = int(stage_of.max()) + 1
    rows: dict[str, dict[int, int]] = {}
    for dataset in METHOD_SETS.values():
        source = data_layout.dataset(data_root, dataset) / "train"
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
            "path": dg.MetadataValue.path(str(data_layout.staged_datasets(data_root))),
        },
        data_version=dg.DataVersion(content_hash(manifest)))


class StagedModelsConfig(dg.Config):
    methods: list[str] = Field(
        default_factory=lambda: list(METHOD_SETS),
        description=f"Which methods to tune stage after stage: {', '.join(METHOD_SETS)} ([]: "
        "the stage-0 SFT model alone).")
    reference: str = Field(
        default="sft",
        description="The DPO reference of every stage: 'sft' (the stage-0 SFT model, as the "
        "paper keeps its SFT model) or 'previous' (the model the stage starts from).")
    sft: SFTModelConfig = Field(
        default_factory=SFTModelConfig,
        description="The stage-0 SFT run's config (and the continued-SFT method's unless "
        "`continued_sft` is set).")
    dpo: DPOModelConfig = Field(
        default_factory=DPOModelConfig,
        description="The DPO runs' config (every DPO method without its own below).")
    continued_sft: SFTModelConfig | None = Field(
        default=None,
        description="The continued-SFT method's (`sft`) runs, when they differ from stage 0's "
        "`sft`. With `max_steps` -1 and `cpo` tuned too, each stage takes as many optimizer "
        "steps as that stage's CPO run, stage 0 included.")
    cpo: DPOModelConfig | None = Field(default=None, description="cpo's runs (unset: `dpo`).")
    dpo_random: DPOModelConfig | None = Field(
        default=None, description="dpo_random's runs (unset: `dpo`).")
    cpo_no_cot: DPOModelConfig | None = Field(
        default=None, description="cpo_no_cot's runs (unset: `dpo`).")

    def method_config(self, method: str) -> dg.Config:
        """The config `method`'s runs train with after stage 0's SFT."""
        if method == "sft":
            return self.continued_sft or self.sft
        return getattr(self, method) or self.dpo

    def step_matched(self) -> bool:
        """Whether the continued-SFT method takes CPO's optimizer steps, stage by stage."""
        return ("sft" in self.methods and "cpo" in self.methods
                and self.method_config("sft").max_steps == -1)


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
    deps=["staged_training_sets"],
    kinds={"pytorch"},
    description="SFT on stage 0, then each method (continued SFT, CPO, random-negative DPO, "
    "CPO without CoT) tuned stage after stage from its previous stage's model, the reference "
    "being the stage-0 SFT model or the previous model (`reference`); continued SFT takes "
    "each stage's CPO steps when both are tuned, and each method may have its own config. "
    "Each run is launched like the model assets' (Pipes; reused when its inputs and config "
    "are unchanged).",
)
def staged_models(context: dg.AssetExecutionContext, config: StagedModelsConfig,
                  settings: PipelineSettings,
                  pipes_subprocess_client: dg.PipesSubprocessClient) -> dg.MaterializeResult:
    unknown = sorted(set(config.methods) - set(METHOD_SETS))
    if unknown:
        raise dg.Failure(description=f"methods must be some of {list(METHOD_SETS)}, got "
                         f"{config.methods}")
    if config.reference not in REFERENCES:
        raise dg.Failure(description=f"reference must be one of {REFERENCES}, got "
                         f"{config.reference!r}")
    data_root = settings.data_root_path()
    sets = _read_json(data_root, _manifest_path(data_root, "sets.json"),
                      "materialize staged_training_sets first")
    n_stages = sets["stages"]

    def launch(method: str, stage: int, start: StartingModel, reference: StartingModel | None,
               run_config: dg.Config, overrides: dict | None = None) -> TrainedRun:
        dataset = METHOD_SETS[method]
        context.log.info(f"staged_models: {method} stage {stage + 1}/{n_stages} on {dataset}")
        return launch_training(
            context, _ASSET, SFT if method == "sft" else DPO, f"{dataset}@stage-{stage}",
            stage_split(data_root, stage, dataset), None, run_config, data_root,
            pipes_subprocess_client, start, reference, overrides)

    first = launch("sft", 0, policy_start(settings.resolve().policy_model), None, config.sft)
    initial = trained_start(first.run, first.data_version)
    runs = {INITIAL: [_entry(data_root, "sft", 0, first)]}
    matched = config.step_matched()
    # CPO first: a step-matched continued SFT takes as many steps as its stage's CPO run.
    for method in sorted(config.methods, key=lambda m: m != "cpo"):
        start, entries = initial, []
        for stage in range(n_stages):
            if method == "sft" and stage == 0 and not matched:
                trained = first
            else:
                overrides = ({"max_steps": runs["cpo"][stage]["global_step"]}
                             if method == "sft" and matched else None)
                # The stage-0 run starts from the SFT model, its own reference either way.
                refer = initial if config.reference == "sft" and start is not initial else None
                trained = launch(method, stage, start, None if method == "sft" else refer,
                                 config.method_config(method), overrides)
            entries.append(_entry(data_root, method, stage, trained))
            start = trained_start(trained.run, trained.data_version)
        runs[method] = entries
    runs = {name: runs[name] for name in (INITIAL, *config.methods)}
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


# The staged evaluation scores a model per method and stage: fewer resamples and pairs, the
# probes on a subset of studies, and no METEOR.
StagedEvaluationConfig = scoring_config(
    "StagedEvaluationConfig",
    ("max_new_tokens", "batch_size", "resamples", "seed", "max_pairs", "probe_studies",
     "split"),
    defaults={"batch_size": 16, "resamples": 200, "max_pairs": 100, "probe_studies": 150},
    methods=(list[str] | None, Field(
        default=None,
        description="Score only these methods' models, beside the stage-0 SFT model (unset: "
        "every method staged_models tuned; [] the stage-0 SFT model alone, e.g. a gate on "
        "validate before scoring the rest).")),
    final_only=(bool, Field(
        default=False,
        description="Score each method's model after the last stage only (and the stage-0 SFT "
        "model): what a comparison of methods needs, without the after-stage-k rows of the "
        "matrices, forgetting or backward transfer.")))


@dg.asset(
    group_name=_GROUP,
    code_version=STAGED_EVALUATION_VERSION,
    deps=["staged_models", "sft_dataset", "preference_pairs"],
    kinds={"pytorch"},
    check_specs=[dg.AssetCheckSpec(
        "staged_evaluation_sees_no_training_data", asset="staged_evaluation", blocking=True,
        description="No test study, and no patient of one, is in any training split.")],
    description="Every staged model on every stage's test studies: the answer-line macro-F1 "
    "(five), exact-answer, parse-rate and average-five matrices (after stage k x test stage j) "
    "per method beside the all-'No "
    "Finding' floor, forgetting and backward transfer, and the drift probes after each stage; "
    "a markdown report under <data_root>/evaluation/staged/.",
)
def staged_evaluation(context: dg.AssetExecutionContext, config: StagedEvaluationConfig,
                      settings: PipelineSettings, cxr_studies: pd.DataFrame):

    data_root = settings.data_root_path()
    manifest = _read_json(data_root, _manifest_path(data_root, "models.json"),
                          "materialize staged_models first")
    if config.methods is not None:
        missing = sorted(set(config.methods) - set(manifest["runs"]) - {INITIAL})
        if missing:
            raise dg.Failure(description=f"methods {missing} were not tuned by staged_models "
                             f"(its manifest has {sorted(set(manifest['runs']) - {INITIAL})})")
        kept = {name: entries for name, entries in manifest["runs"].items()
                if name == INITIAL or name in config.methods}
        manifest = {**manifest, "runs": kept}
    if config.final_only:
        manifest = {**manifest, "runs": {name: entries if name == INITIAL else entries[-1:]
                                         for name, entries in manifest["runs"].items()}}
    test = test_studies(data_root, config.split)
    check = leakage_check(data_root, test, "staged_evaluation_sees_no_training_data")
    models = {}  # data version -> model dir, each model once (sft's stage 0 is the initial one)
    for entries in manifest["runs"].values():
        for entry in entries:
            models[entry["data_version"]] = run_dirs.model_dir(data_root / entry["run_dir"])
    # Keyed on which models (by content) fill which cells, not on how the manifest came about
    # (a run reused rather than trained is the same model).
    cells = {method: [(e["stage"], e["data_version"]) for e in entries]
             for method, entries in manifest["runs"].items()}
    key, folder = report_folder(data_root, [
        STAGED_EVALUATION_VERSION, config.model_dump(), manifest["reference"], cells,
        [row["study_id"] for row in test]], staged=True)
    if not (folder / REPORT).is_file() or config.force:
        _evaluate_staged(context, config, data_root, manifest, models, test, cxr_studies,
                         folder)
    else:
        context.log.info(f"staged models and config unchanged: reusing {folder / REPORT}")
    summary = json.loads((folder / "staged.json").read_text())
    metadata: dict[str, object] = {
        "report": dg.MetadataValue.md((folder / REPORT).read_text()),
        "report_path": dg.MetadataValue.path(str(folder / REPORT)),
        "generations": dg.MetadataValue.path(str(folder / GENERATIONS)),
        "accuracy_plot": png_markdown((folder / "accuracy_by_stage.png").read_bytes(),
                                      "accuracy after each stage"),
    }
    for method, figures in summary["methods"].items():
        metadata[f"{method}/final_mean_macro_f1_five"] = figures["final_mean_macro_f1_five"]
        metadata[f"{method}/final_mean_accuracy"] = figures["final_mean"]
        metadata[f"{method}/forgetting"] = figures["forgetting"]
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(key),
                                check_results=[check])


def _evaluate_staged(context, config, data_root: Path, manifest: dict,
                     models: dict[str, Path], test: list[dict], cxr_studies: pd.DataFrame,
                     folder: Path) -> None:
    from cpo_pipeline.evaluation.plots import staged_png

    truth = TestTruth.of(test, cxr_studies)
    # Every staged model's rewards are measured against the stage-0 SFT model.
    initial = run_dirs.model_dir(data_root / manifest["runs"][INITIAL][0]["run_dir"])
    scored = score_models([ModelUnderTest(version, model_dir, initial)
                           for version, model_dir in models.items()],
                          test, held_out_pairs(data_root, config.max_pairs, config.split), truth,
                          replace(config.options(), meteor=False), context.log.info)
    figures = staged_figures(
        manifest["runs"], {s.model.name: s.evaluation.answers for s in scored},
        {s.model.name: s.figures.probes for s in scored}, truth.labels, truth.stages,
        [row["subject_id"] for row in test], resamples=config.resamples, seed=config.seed)
    write_tables(folder, scored, "model_version")
    write_file(folder / "staged.json", json.dumps(
        figures.summary(manifest["reference"], manifest["stages"]), indent=1, default=float))
    write_file(folder / "accuracy_by_stage.png", staged_png(figures.matrices, figures.initial))
    scored_on = f"> {split_note(config.split)}\n\n" if split_note(config.split) else ""
    write_file(folder / REPORT, scored_on + figures.markdown(manifest["reference"]))


STAGED_ASSETS = (staged_training_sets, staged_models, staged_evaluation)

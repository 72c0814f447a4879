"""The one evaluation runner: trained models scored on the held-out studies, behind both
`model_evaluation` and `staged_evaluation`.

What both share lives here: the test split and the held-out pairs they read, the leakage
figures their blocking check reports, the reuse key and folder of a report, and the model loop
(generation, likelihood probes, the report's figures per model). Each model's preference rewards
are scaled by the beta it was trained with, read back from its run summary. Plain Python: the
assets turn `EvaluationInputError` into a Dagster failure; torch is imported when a model is
scored, never at import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cpo_pipeline import data_layout
from cpo_pipeline.radiology.answer_format import parse_trajectory
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS
from cpo_pipeline.storage import atomic_target, content_hash
from cpo_pipeline.training import run_dirs
from cpo_pipeline.training.config import DPO, SFT, TrainingConfig

# The sets whose train splits the models learned from: no test study may be in one.
TRAINING_SETS = ("sft_dataset", "preference_pairs", "random_negative_pairs",
                 "diagnosis_only_pairs")
REPORT = "report.md"
GENERATIONS = "generations.parquet"
PAIRS = "pairs.parquet"


class EvaluationInputError(ValueError):
    """What an evaluation needs is missing (a split not materialized, a filter matching none)."""


def _rows(directory: Path) -> list[dict]:
    from datasets import load_from_disk

    return list(load_from_disk(str(directory))) if directory.is_dir() else []


# The held-out splits an evaluation scores: choices (hyper-parameters, checkpoints) are made on
# validate, and test is read once, for the figures that are reported.
SCORED_SPLITS = ("validate", "test")


def _scored_split(split: str) -> str:
    if split not in SCORED_SPLITS:
        raise EvaluationInputError(f"split must be one of {SCORED_SPLITS}, got {split!r}")
    return split


def split_note(split: str) -> str | None:
    """What a report scored on `split` says of it (None for test, the reported split)."""
    return None if split == "test" else (f"Scored on the {split} split, not test: for "
                                         "choosing, not for reporting.")


def test_rows(data_root: Path, split: str = "test") -> list[dict]:
    """The `split` (test, or validate) of sft_dataset: the studies an evaluation scores."""
    rows = _rows(data_layout.dataset(data_root, "sft_dataset") / _scored_split(split))
    if not rows:
        raise EvaluationInputError(f"no {split} studies to evaluate: materialize sft_dataset "
                                   f"(its {split} split) first")
    return rows


def held_out_pairs(data_root: Path, max_pairs: int, split: str = "test") -> list[dict]:
    """The preference pairs of `split`, the same split as the studies scored, at most
    `max_pairs` of them (a fixed subset by pair id; 0: all)."""
    pairs_dir = data_layout.dataset(data_root, "preference_pairs")
    held_out = _rows(pairs_dir / _scored_split(split))
    if max_pairs:
        held_out = sorted(held_out, key=lambda row: content_hash(row["pair_id"]))[:max_pairs]
    return held_out


@dataclass(frozen=True)
class Leakage:
    """Test studies, and patients of test studies, found in a training split."""

    studies: list[int]
    patients: list[int]

    @property
    def clean(self) -> bool:
        return not self.studies and not self.patients

    def describe(self) -> str:
        return (f"{len(self.studies)} test studies and {len(self.patients)} test patients are "
                f"in a training split (e.g. {self.studies[:3]} {self.patients[:3]}); the bound "
                "is 0, and no config option relaxes it: the splits come from cxr_studies, so "
                "re-materialize the training sets from it (" + ", ".join(TRAINING_SETS)
                + "), then the models")


def leakage(data_root: Path, test: Sequence[dict]) -> Leakage:
    """Which of `test`'s studies and patients the models may have learned from."""
    from datasets import load_from_disk

    studies, patients = set(), set()
    for name in TRAINING_SETS:
        train = data_layout.dataset(data_root, name) / "train"
        if train.is_dir():
            split = load_from_disk(str(train))
            studies.update(split["study_id"])
            patients.update(split["subject_id"])
    return Leakage(sorted({row["study_id"] for row in test} & studies),
                   sorted({row["subject_id"] for row in test} & patients))


def report_folder(data_root: Path, identity: object, *, staged: bool = False
                  ) -> tuple[str, Path]:
    """The content key of an evaluation (everything that decides its figures) and the folder
    its report is written to (`data_layout.evaluation`, by the key's first 16 digits)."""
    key = content_hash(identity)
    return key, data_layout.evaluation(data_root, staged) / key[:16]


@dataclass(frozen=True)
class Objective:
    """What a model was trained to optimise, as its run summary records it: the beta that
    scales its preference rewards, and the loss terms with their weights."""

    beta: float
    loss_type: tuple[str, ...]
    loss_weights: tuple[float, ...]

    @classmethod
    def of(cls, model_dir: Path | str) -> Objective:
        """From `model_dir`'s training summary; a model this pipeline did not train (a base
        model, a hub id) is scored with the DPO recipe's default beta and no loss."""
        summary = run_dirs.read_summary_of_model(model_dir)
        if summary is None:
            return cls(TrainingConfig.beta, (), ())
        recipe = summary["recipe"]
        if summary["stage"] == SFT:  # no preference loss: rewards at the beta it would get
            return cls(recipe["beta"], ("sft",), (1.0,))
        # Summaries written before `loss_type` was a field trained sigmoid DPO.
        trained = TrainingConfig(stage=DPO, beta=recipe["beta"],
                                 loss_type=recipe.get("loss_type", "sigmoid"),
                                 sft_loss_weight=recipe["sft_loss_weight"])
        loss_type, loss_weights = trained.trl_losses()
        return cls(trained.beta, tuple(loss_type), tuple(loss_weights))

    def as_dict(self) -> dict:
        return {"beta": self.beta, "loss_type": list(self.loss_type),
                "loss_weights": list(self.loss_weights)}


@dataclass(frozen=True)
class ModelUnderTest:
    """One model to score: a name for the report, its directory (or hub id), and the reference
    its preference rewards are measured against (None: rewards are its own log-ratios)."""

    name: str
    model_dir: Path | str
    reference_dir: Path | str | None = None


@dataclass(frozen=True)
class ScoringOptions:
    """How models are scored (the evaluations' launchpad configs are generated from these)."""

    max_new_tokens: int = field(default=160, metadata={"help": "Greedy generation length."})
    batch_size: int = field(default=8, metadata={"help": "Studies per generation batch."})
    resamples: int = field(default=1000, metadata={
        "help": "Patient-bootstrap resamples per interval."})
    seed: int = field(default=0, metadata={"help": "Seed of the bootstrap resamples."})
    max_pairs: int = field(default=0, metadata={"help": (
        "Score at most this many held-out preference pairs (a fixed subset, by pair id); 0: "
        "all of them. The pairs' probes cost the most per item.")})
    probe_studies: int = field(default=0, metadata={"help": (
        "Run the per-study likelihood probes (synonym swaps, answer-line scores) on the first "
        "this many test studies of the split; 0: all. Accuracy always covers every test study; "
        "the probes cost a teacher-forced pass per study and candidate, per model.")})
    meteor: bool = field(default=True, metadata={"help": "Compute METEOR (needs Java)."})
    split: str = field(default="test", metadata={"help": (
        "The held-out split scored, studies and pairs alike: 'test' for the figures you "
        "report, 'validate' for choosing hyper-parameters or checkpoints (choose on "
        "validate, then read test once).")})


@dataclass(frozen=True)
class ScoredModel:
    model: ModelUnderTest
    objective: Objective
    evaluation: object  # evaluate.ModelEvaluation
    figures: object  # report.ModelFigures


@dataclass(frozen=True)
class TestTruth:
    """The radiologists' side of the test studies, in the test split's order."""

    labels: pd.DataFrame
    findings: list[str]
    stages: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, test: Sequence[dict], cxr_studies: pd.DataFrame) -> TestTruth:
        studies = cxr_studies.set_index("study_id")
        ids = [row["study_id"] for row in test]
        return cls(studies.loc[ids, list(CHEXPERT_LABELS)].reset_index(drop=True),
                   [parse_trajectory(row["messages"][-1]["content"]).findings for row in test],
                   studies.loc[ids, "stage"].tolist() if "stage" in studies else [])


def score_models(models: Iterable[ModelUnderTest], test: Sequence[dict], pairs: Sequence[dict],
                 truth: TestTruth, options: ScoringOptions,
                 log: Callable[[str], None] = lambda message: None) -> list[ScoredModel]:
    """Every model over `test` and `pairs`, each with the report's figures."""
    from cpo_pipeline.concepts.mentions import ConceptExtractor
    from cpo_pipeline.concepts.ontology import load_ontology
    from cpo_pipeline.evaluation.drift import synonym_pairs
    from cpo_pipeline.evaluation.evaluate import EvaluationOptions, evaluate_model
    from cpo_pipeline.evaluation.report import model_figures

    ontology = load_ontology()
    extractor = ConceptExtractor(ontology)
    swaps = synonym_pairs(ontology)
    models = list(models)
    scored = []
    for number, model in enumerate(models, 1):
        objective = Objective.of(model.model_dir)
        log(f"evaluating {model.name} ({number}/{len(models)}) on {len(test)} studies and "
            f"{len(pairs)} pairs, rewards at beta {objective.beta}")
        evaluation = evaluate_model(
            model.model_dir, test, pairs=pairs, reference_dir=model.reference_dir,
            synonym_pairs=swaps,
            options=EvaluationOptions(max_new_tokens=options.max_new_tokens,
                                      batch_size=options.batch_size, beta=objective.beta,
                                      probe_studies=options.probe_studies or None))
        figures = model_figures(evaluation, truth.labels, truth.findings, ontology, extractor,
                                resamples=options.resamples, seed=options.seed,
                                meteor=options.meteor)
        scored.append(ScoredModel(model, objective, evaluation, figures))
    return scored


def write_tables(folder: Path, scored: Sequence[ScoredModel], column: str,
                 names: Mapping[str, str] | None = None) -> None:
    """Every model's answers (`generations.parquet`) and held-out pair scores (`pairs.parquet`),
    one row per study or pair and model, the model named in `column` (by `names[model name]`
    when given)."""
    def tagged(frame: pd.DataFrame, model: ModelUnderTest) -> pd.DataFrame:
        return frame.assign(**{column: (names or {}).get(model.name, model.name)})

    folder.mkdir(parents=True, exist_ok=True)
    answers = [tagged(s.evaluation.answers.drop(columns=["error"]), s.model) for s in scored]
    with atomic_target(folder / GENERATIONS) as tmp:
        pd.concat(answers, ignore_index=True).to_parquet(tmp, index=False)
    pairs = [tagged(s.evaluation.pairs, s.model).assign(beta=s.objective.beta)
             for s in scored if len(s.evaluation.pairs)]
    if pairs:
        with atomic_target(folder / PAIRS) as tmp:
            pd.concat(pairs, ignore_index=True).to_parquet(tmp, index=False)


def write_file(path: Path, content: str | bytes) -> None:
    """`content` at `path`, atomically (a reader never sees half a report)."""
    with atomic_target(path) as tmp:
        if isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            tmp.write_text(content)

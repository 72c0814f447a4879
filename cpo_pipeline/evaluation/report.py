"""The evaluation report: every model's figures side by side, in the paper's layout first.

`model_figures` turns one model's `ModelEvaluation` into the report's tables with the model-free
metric modules; `report_markdown` writes the comparison, the paper's published numbers beside
ours (clearly the paper's, on real MIMIC-CXR / MS-CXR-T with a 7B model), and how each figure is
computed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cpo_pipeline.concepts.mentions import ConceptExtractor
from cpo_pipeline.concepts.ontology import Ontology
from cpo_pipeline.evaluation.auc import auc_table
from cpo_pipeline.evaluation.classification import (
    ANSWER_LABELS,
    ANSWER_METRICS,
    AVERAGE_FIVE,
    FLOOR,
    PAPER_FIVE,
    accuracy_table,
    answer_metrics,
    no_finding_answers,
    reference_answers,
)
from cpo_pipeline.evaluation.clinical import UNCERTAIN_POLICY, efficacy_table
from cpo_pipeline.evaluation.drift import attribute_divergence, flip_rate
from cpo_pipeline.evaluation.evaluate import ModelEvaluation
from cpo_pipeline.evaluation.nlg import nlg_scores
from cpo_pipeline.evaluation.resampling import RESAMPLES, mean_interval

# The paper's Table 2 (top-1 accuracy %, MS-CXR-T's five findings, Qwen2.5-VL-7B) and its
# report-generation scores (CPO on MIMIC-CXR): ../shared/PAPER.md. Their data, not ours.
PAPER_ACCURACY = {
    "sft_model": (54.9, 71.7, 70.0, 95.9, 76.5, 73.8),
    "dpo_random_model": (63.2, 72.4, 76.7, 93.5, 76.3, 76.4),
    "cpo_model": (77.7, 72.7, 87.4, 95.8, 75.3, 81.8),
}
PAPER_NLG = {"BLEU-1": 0.426, "BLEU-2": 0.288, "BLEU-3": 0.186, "BLEU-4": 0.155,
             "ROUGE-L": 0.321, "METEOR": 0.236, "CIDEr": 0.375}


@dataclass(frozen=True)
class ModelFigures:
    answers: pd.DataFrame  # `answer_metrics`: the primary figures
    accuracy: pd.DataFrame
    auc: pd.DataFrame
    efficacy: pd.DataFrame
    nlg: dict[str, float]
    nlg_notes: tuple[str, ...]
    probes: dict[str, float | None]


def _share(values: Sequence[bool], groups: Sequence, resamples: int, seed: int):
    if not len(values):
        return None, None, None
    interval = mean_interval(np.asarray(values, dtype=float), np.asarray(groups),
                             resamples=resamples, seed=seed)
    return interval.value, interval.low, interval.high


def model_figures(evaluation: ModelEvaluation, reference_labels: pd.DataFrame,
                  reference_findings: Sequence[str], ontology: Ontology,
                  extractor: ConceptExtractor, *, resamples: int = RESAMPLES, seed: int = 0,
                  meteor: bool = True) -> ModelFigures:
    """The report's figures for one model. `reference_labels` (one row per test study, in the
    evaluation's order, CheXpert columns) and `reference_findings` are the radiologists'."""
    answers = evaluation.answers
    subjects = answers["subject_id"].to_numpy()
    reference = reference_answers(reference_labels)
    primary = answer_metrics(answers, reference, subjects, resamples=resamples, seed=seed)
    accuracy = accuracy_table(answers, reference, subjects, resamples=resamples, seed=seed)
    # The likelihood probes may cover only some studies (`EvaluationOptions.probe_studies`).
    probed = answers["study_id"].isin(evaluation.scores["study_id"]).to_numpy()
    scores = evaluation.scores.set_index("study_id").loc[answers.loc[probed, "study_id"]]
    auc = auc_table(scores[list(ANSWER_LABELS)].reset_index(drop=True),
                    reference[probed].reset_index(drop=True), subjects[probed],
                    resamples=resamples, seed=seed)
    thinking = answers["findings"].fillna("").tolist()
    efficacy = efficacy_table(thinking, reference_findings, subjects, resamples=resamples,
                              seed=seed)
    nlg = nlg_scores(thinking, list(reference_findings), meteor=meteor)
    swaps, pairs = evaluation.swaps, evaluation.pairs
    probes: dict[str, float | None] = {
        "synonym swaps": float(len(swaps)),
        "generation tokens/s": (evaluation.generated_tokens / evaluation.generation_seconds
                                if evaluation.generation_seconds else None),
        "flip rate after a synonym swap": flip_rate(
            [(x,) for x in swaps.get("before", [])], [(x,) for x in swaps.get("after", [])]),
        "attribute-mention JSD to the radiologists": attribute_divergence(
            thinking, list(reference_findings), extractor, ontology),
    }
    if len(pairs):
        groups = pairs["subject_id"].to_numpy()
        wins = (pairs["reward_margin"] > 0).tolist()
        value, low, high = _share(wins, groups, resamples, seed)
        probes |= {"held-out pairs": float(len(pairs)), "reward accuracy": value,
                   "reward accuracy CI low": low, "reward accuracy CI high": high,
                   "mean reward margin": float(pairs["reward_margin"].mean())}
        for side in ("chosen", "rejected"):
            follows = [led in states.split(" and ") for led, states in
                       zip(pairs[f"{side}_led_to"], pairs[f"{side}_states"], strict=True)]
            probes[f"answer follows the {'factual' if side == 'chosen' else 'counterfactual'} "
                   "thinking"] = float(np.mean(follows))
    return ModelFigures(primary, accuracy, auc, efficacy, nlg.scores, nlg.notes, probes)


@dataclass(frozen=True)
class FloorFigures:
    """What answering "No Finding" to every test study scores: the floor every model's row is
    read against."""

    answers: pd.DataFrame
    accuracy: pd.DataFrame

    @classmethod
    def of(cls, reference_labels: pd.DataFrame, subject_ids: Sequence, *,
           resamples: int = RESAMPLES, seed: int = 0) -> FloorFigures:
        reference = reference_answers(reference_labels)
        constant = no_finding_answers(len(reference))
        return cls(answer_metrics(constant, reference, subject_ids, resamples=resamples,
                                  seed=seed),
                   accuracy_table(constant, reference, subject_ids, resamples=resamples,
                                  seed=seed))

    def as_dict(self) -> dict:
        return {"answer_metrics": self.answers.to_dict(orient="records"),
                "accuracy": self.accuracy.to_dict(orient="records")}


def _cell(value, low=None, high=None, scale: float = 100.0, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    text = f"{value * scale:.{digits}f}"
    if low is not None and high is not None and not np.isnan(low):
        text += f" [{low * scale:.{digits}f}, {high * scale:.{digits}f}]"
    return text


def figures_summary(figures: Mapping[str, ModelFigures],
                    objectives: Mapping[str, Mapping]) -> str:
    """Every model's figures as JSON (the evaluation's `figures.json`), with the objective
    (beta, loss) its preference rewards were scaled by."""
    import json

    return json.dumps({name: {
        "answer_metrics": figure.answers.to_dict(orient="records"),
        "accuracy": figure.accuracy.to_dict(orient="records"),
        "auc": figure.auc.to_dict(orient="records"),
        "efficacy": figure.efficacy.to_dict(orient="records"),
        "nlg": figure.nlg, "probes": figure.probes, "objective": dict(objectives[name])}
        for name, figure in figures.items()}, indent=1, default=float)


def _answer_row(name: str, table: pd.DataFrame) -> str:
    table = table.set_index("label")
    return f"| {name} | " + " | ".join(
        _cell(table.loc[m, "value"], table.loc[m, "ci_low"], table.loc[m, "ci_high"])
        for m in ANSWER_METRICS) + " |"


def report_markdown(figures: Mapping[str, ModelFigures], *, studies: int, patients: int,
                    floor: FloorFigures, notes: Sequence[str] = ()) -> str:
    """The comparison report: the primary figures beside the floor, the paper's layout, then
    AUCs, clinical efficacy, NLG, probes."""
    lines = [f"# Model evaluation: {studies} test studies of {patients} patients", ""]
    lines += [*notes, ""] if notes else []
    lines += ["## Answer lines (%, 95% CI resampling patients): the figures that rank models", "",
              ("Per answer label, \"the answer names it\" against \"the reference has it "
               "positive\"; macro averages over the paper's five findings and over all 13 answer "
               "labels where defined; an unparsed answer names nothing. Answering \"No Finding\" "
               "to every study is the floor: a model that does not read the image scores it."),
              "", "| model | " + " | ".join(ANSWER_METRICS) + " |",
              "|---|" + "---|" * len(ANSWER_METRICS), _answer_row(FLOOR, floor.answers)]
    lines += [_answer_row(name, figure.answers) for name, figure in figures.items()]
    floor_accuracy = floor.accuracy.set_index("label")
    lines += ["", "## Disease classification in the paper's layout (accuracy %, 95% CI)", "",
              ("Per finding: the share of test studies where \"the answer names it\" agrees with "
              "\"the reference has it positive\"; unparsed answers count as wrong. A constant "
              "\"No Finding\" scores one minus each finding's prevalence (the floor row)."), "",
              "| model | " + " | ".join(PAPER_FIVE) + " | avg | unparsed |",
              "|---|" + "---|" * (len(PAPER_FIVE) + 2),
              f"| {FLOOR} | " + " | ".join(_cell(floor_accuracy.loc[d, "accuracy"])
                                          for d in (*PAPER_FIVE, AVERAGE_FIVE)) + " | 0 |"]
    for name, figure in figures.items():
        table = figure.accuracy.set_index("label")
        cells = [_cell(table.loc[d, "accuracy"], table.loc[d, "ci_low"], table.loc[d, "ci_high"])
                 for d in (*PAPER_FIVE, AVERAGE_FIVE)]
        lines.append(f"| {name} (ours) | " + " | ".join(cells)
                     + f" | {int(table['unparsed'].iloc[0])} |")
        if name in PAPER_ACCURACY:
            lines.append(f"| {name} (paper, real data) | "
                         + " | ".join(f"{v:.1f}" for v in PAPER_ACCURACY[name]) + " | - |")
    lines += ["", "## Per-label ROC AUC of the answer-line likelihood", "",
              ("Score: the model's log-likelihood of \"The disease of this patient is X.\" "
              "teacher-forced after its own thinking, also when its answer did not parse (the "
              "text up to where it broke), right after the prompt for an answer line alone "
              "(the paper does not say how it gets AUCs)."),
              "", "| model | " + " | ".join(ANSWER_LABELS) + " |",
              "|---|" + "---|" * len(ANSWER_LABELS)]
    for name, figure in figures.items():
        table = figure.auc.set_index("label")
        lines.append(f"| {name} | " + " | ".join(
            _cell(table.loc[label, "auc"], scale=1, digits=2) for label in ANSWER_LABELS) + " |")
    lines += ["", (f"## Clinical efficacy (labeller on generated vs reference findings; "
              f"{UNCERTAIN_POLICY})"), "", ("| model | micro F1 (14) | macro F1 (14) | "
              "micro F1 (five) | macro F1 (five) |"), "|---|---|---|---|---|"]
    for name, figure in figures.items():
        table = figure.efficacy.set_index("label")
        lines.append(f"| {name} | " + " | ".join(
            _cell(table.loc[row, "f1"], table.loc[row, "f1_ci_low"], table.loc[row, "f1_ci_high"],
                  scale=1, digits=3)
            for row in ("micro (14)", "macro (14)", "micro (five)", "macro (five)")) + " |")
    metrics = list(PAPER_NLG)
    lines += ["", "## Findings text (COCO caption metrics)", "",
              "| model | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for name, figure in figures.items():
        lines.append(f"| {name} | " + " | ".join(
            f"{figure.nlg[m]:.3f}" if m in figure.nlg else "skipped" for m in metrics) + " |")
    lines.append("| CPO (paper, real data) | "
                 + " | ".join(f"{PAPER_NLG[m]:.3f}" for m in metrics) + " |")
    for name, figure in figures.items():
        lines += [f"- {name}: {note}" for note in figure.nlg_notes]
    probes = sorted({key for figure in figures.values() for key in figure.probes})
    lines += ["", "## Preference and drift probes", "",
              ("Synonym swaps edit the radiologists' findings of each test study (the same inputs "
              "for every model); the answer a thinking leads to is the answer line of highest "
              "likelihood after it. The JSD is n/a for a model whose reasoning mentions no "
              "attribute of the graph. A reward is beta x (log p(chosen) - log p(rejected)) "
              "less the same under the model's reference (sft_model for the DPO models; the "
              "base and SFT models have none)."), "", "| probe | "
              + " | ".join(figures) + " |", "|---|" + "---|" * len(figures)]
    for probe in probes:
        lines.append(f"| {probe} | " + " | ".join(
            _format_probe(figure.probes.get(probe), probe) for figure in figures.values()) + " |")
    return "\n".join(lines) + "\n"


_COUNTS = ("synonym swaps", "held-out pairs", "generation tokens/s")


def _format_probe(value: float | None, probe: str = "") -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    return f"{value:.0f}" if probe in _COUNTS else f"{value:.3f}"

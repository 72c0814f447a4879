"""One model's evaluation on held-out studies: what it answers and what its likelihoods say.

Imported by the evaluation process only (torch at call time). `evaluate_model` runs a model over
the test split of `sft_dataset` (and the held-out `preference_pairs`, when given) and returns
plain tables; `metrics` turns them into the report's figures with the model-free metric modules.

What "the answer a thinking leads to" means here, for the probes: the answer line of highest
likelihood after that thinking, teacher-forced (`inference.answer_line_scores`), among the 13
single-label answer lines. It is computed the same way before and after a synonym swap, and for
factual and counterfactual thinking alike, so a flip is the model's and not the decoding's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cpo_pipeline.evaluation.classification import ANSWER_LABELS, parse_answers
from cpo_pipeline.evaluation.drift import swapped_variants
from cpo_pipeline.radiology.answer_format import (
    TrajectoryFormatError,
    own_thinking,
    parse_trajectory,
    positive_diseases,
)
from cpo_pipeline.radiology.labeller import label_report


@dataclass(frozen=True)
class EvaluationOptions:
    max_new_tokens: int = 160
    batch_size: int = 8
    # DPO's beta: a preference reward is beta * (log p_model - log p_reference).
    beta: float = 0.1
    # The per-study likelihood probes (answer-line scores, synonym swaps) on the first this many
    # test studies only; None: all. They cost a teacher-forced pass per study and candidate.
    probe_studies: int | None = None


@dataclass(frozen=True)
class ModelEvaluation:
    """Per test study: the answer and its parse, the likelihood score of each answer label,
    the synonym-swap probe; per held-out pair: the log-probabilities of chosen and rejected under
    the model (and its reference), and where factual and counterfactual thinking lead."""

    answers: pd.DataFrame
    scores: pd.DataFrame
    swaps: pd.DataFrame
    pairs: pd.DataFrame
    generated_tokens: int = 0
    generation_seconds: float = 0.0


def _load(path: Path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(str(path), use_safetensors=True)
    return model, AutoProcessor.from_pretrained(str(path))


def _thinking(text: str) -> str | None:
    try:
        return parse_trajectory(text).findings
    except TrajectoryFormatError:
        return None


def _probe_thinking(text: str, findings: str | None) -> str | None:
    """What the answer-line scores are conditioned on: the model's own thinking (`findings`,
    as `parse_answers` read it), also when its answer does not parse (`own_thinking`: the text
    up to where the answer broke); None, no thinking block, for an answer line alone (the
    no-CoT format, whose findings are empty)."""
    if isinstance(findings, str):
        return findings or None
    return own_thinking(text)


def _led_to(model, processor, example: dict, findings: str) -> str:
    from cpo_pipeline.evaluation.inference import answer_line_scores

    scores = answer_line_scores(model, processor, example, findings, ANSWER_LABELS)
    return max(scores, key=scores.get)


def evaluate_model(model_dir: Path | str, test: Sequence[dict], *, pairs: Sequence[dict] = (),
                   reference_dir: Path | str | None = None, synonym_pairs: Sequence = (),
                   options: EvaluationOptions = EvaluationOptions()) -> ModelEvaluation:
    """Run the model in `model_dir` over `test` (rows of the exported SFT split: messages,
    images, study_id, subject_id) and `pairs` (rows of a held-out preference split). The
    synonym-swap probe edits the radiologists' findings of each test study (its factual
    answer), the same inputs for every model, so flip rates compare across models."""
    from cpo_pipeline.evaluation.inference import (
        answer_line_scores,
        continuation_logprobs,
        generate,
    )

    model, processor = _load(model_dir)
    started = time.perf_counter()
    texts = generate(model, processor, list(test), max_new_tokens=options.max_new_tokens,
                     batch_size=options.batch_size)
    seconds = time.perf_counter() - started
    tokens = sum(len(processor.tokenizer(text, add_special_tokens=False)["input_ids"])
                 for text in texts)
    parsed = parse_answers(texts)
    ids = pd.DataFrame({"study_id": [row["study_id"] for row in test],
                        "subject_id": [row["subject_id"] for row in test]})
    answers = pd.concat([ids, pd.DataFrame({"text": texts}), parsed], axis=1)

    score_rows, swap_rows = [], []
    probed = len(test) if options.probe_studies is None else min(options.probe_studies, len(test))
    # An unparsed answer's findings cell is None, or NaN once pandas has a float beside it.
    for row, text, findings in zip(list(test)[:probed], texts[:probed],
                                   list(parsed["findings"])[:probed], strict=True):
        scores = answer_line_scores(model, processor, row, _probe_thinking(text, findings),
                                    ANSWER_LABELS)
        score_rows.append({"study_id": row["study_id"], **scores})
        radiologists = _thinking(row["messages"][-1]["content"]) or ""
        for term, synonym, swapped in swapped_variants(radiologists, synonym_pairs, limit=1):
            swap_rows.append({"study_id": row["study_id"], "term": term, "synonym": synonym,
                              "before": _led_to(model, processor, row, radiologists),
                              "after": _led_to(model, processor, row, swapped)})

    pair_rows = []
    reference = _load(reference_dir) if reference_dir is not None and pairs else None
    for row in pairs:
        chosen, rejected = row["chosen"][0]["content"], row["rejected"][0]["content"]
        logp = continuation_logprobs(model, processor, row, "", [chosen, rejected])
        ref = (continuation_logprobs(*reference, row, "", [chosen, rejected])
               if reference is not None else [0.0, 0.0])
        facts = {}
        for side, text in (("chosen", chosen), ("rejected", rejected)):
            thinking = _thinking(text) or ""
            facts[f"{side}_led_to"] = _led_to(model, processor, row, thinking)
            facts[f"{side}_states"] = " and ".join(positive_diseases(label_report(thinking)))
        margin = options.beta * ((logp[0] - ref[0]) - (logp[1] - ref[1]))
        pair_rows.append({"pair_id": row.get("pair_id"), "study_id": row["study_id"],
                          "subject_id": row["subject_id"], "logp_chosen": logp[0],
                          "logp_rejected": logp[1], "ref_logp_chosen": ref[0],
                          "ref_logp_rejected": ref[1], "reward_margin": margin, **facts})
    return ModelEvaluation(answers, pd.DataFrame(score_rows), pd.DataFrame(swap_rows),
                           pd.DataFrame(pair_rows), tokens, seconds)

"""The offline concept-graph expert: applies a perturbation plan to findings text, deterministically.

Used when no LLM endpoint is configured, and named as such in every row it writes. It edits
sentence by sentence, keeping every sentence the plan does not touch word for word:

1. drop sentences that assert the source disease being replaced, state an attribute the plan
   removes or negates, or deny or hedge the target (they would contradict the new finding);
2. append "No <attribute>." for each attribute the plan negates;
3. append one sentence stating the plan's added attributes and the target, at a kept location
   when the plan has one: "Kerley B lines and pulmonary vascular congestion, consistent with
   pulmonary edema." ("There is pulmonary edema." when nothing is added).

Target phrases are ones the shared labeller reads as a positive mention of the target.
"""

from __future__ import annotations

import re

from cpo_pipeline.concepts.mentions import ConceptExtractor
from cpo_pipeline.concepts.queries import PerturbationPlan
from cpo_pipeline.radiology.chexpert import LABEL_NEGATIVE, LABEL_POSITIVE, LABEL_UNCERTAIN
from cpo_pipeline.radiology.labeller import find_mentions

BACKEND = "offline-concept-graph"

TARGET_PHRASES = {
    "Atelectasis": "atelectasis",
    "Cardiomegaly": "cardiomegaly",
    "Consolidation": "consolidation",
    "Edema": "pulmonary edema",
    "Enlarged Cardiomediastinum": "enlarged cardiomediastinum",
    "Fracture": "rib fracture",
    "Lung Lesion": "pulmonary nodule",
    "Lung Opacity": "lung opacity",
    "Pleural Effusion": "pleural effusion",
    "Pleural Other": "pleural thickening",
    "Pneumonia": "pneumonia",
    "Pneumothorax": "pneumothorax",
}

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")
_LIST_MARKER = re.compile(r"\d+\.")


def split_sentences(text: str) -> list[str]:
    """Sentences of a findings text; a numbered item's marker ("2.") stays with its sentence."""
    sentences: list[str] = []
    marker = ""
    for piece in _SENTENCE_END.split(" ".join(text.split())):
        if _LIST_MARKER.fullmatch(piece):
            marker = f"{marker}{piece} "
            continue
        sentences.append(marker + piece)
        marker = ""
    return sentences


def _sentence_is_dropped(
    sentence: str, source: str | None, target: str, dropped_attributes: set[str],
    extractor: ConceptExtractor,
) -> bool:
    for mention in find_mentions(sentence):
        if mention.label == source and mention.status in (LABEL_POSITIVE, LABEL_UNCERTAIN):
            return True
        if mention.label == target and mention.status in (LABEL_NEGATIVE, LABEL_UNCERTAIN):
            return True
    return any(m.label in dropped_attributes and m.status == LABEL_POSITIVE
               for m in extractor.mentions(sentence))


def _joined(terms: list[str]) -> str:
    return terms[0] if len(terms) == 1 else ", ".join(terms[:-1]) + " and " + terms[-1]


def _target_sentence(plan: PerturbationPlan) -> str:
    phrase = TARGET_PHRASES[plan.target]
    if plan.keep_locations:
        phrase += f" in the {plan.keep_locations[0].concept}"
    added = [step.concept for step in plan.add]
    if not added:
        return f"There is {phrase}."
    lead = _joined(added)
    return f"{lead[0].upper()}{lead[1:]}, consistent with {phrase}."


def apply_plan(
    findings: str, plan: PerturbationPlan, source: str | None, extractor: ConceptExtractor
) -> str:
    """The counterfactual findings: `findings` edited by `plan`, replacing `source` (None when
    nothing is to be removed, e.g. a normal study) with `plan.target`."""
    dropped = {step.concept for step in (*plan.remove, *plan.negate)}
    kept = [s for s in split_sentences(findings)
            if not _sentence_is_dropped(s, source, plan.target, dropped, extractor)]
    negations = [f"No {step.concept}." for step in plan.negate]
    return " ".join([*kept, *negations, _target_sentence(plan)])

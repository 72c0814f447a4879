"""The offline concept-graph expert: applies a perturbation plan to findings text, deterministically.

Used when no LLM endpoint is configured, and named as such in every row it writes. It edits
sentence by sentence, keeping every sentence the plan does not touch word for word:

1. drop sentences that assert the source disease being replaced, state an attribute the plan
   removes or negates, deny or hedge the target or a finding the target is a kind of ("no focal
   consolidation" for pneumonia), or state a normality the target contradicts ("The lungs are
   clear." for any lung finding, `radiology.normal_statements`): they would contradict it;
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
from cpo_pipeline.radiology.chexpert import (
    HIERARCHY,
    LABEL_NEGATIVE,
    LABEL_POSITIVE,
    LABEL_UNCERTAIN,
)
from cpo_pipeline.radiology.labeller import find_mentions
from cpo_pipeline.radiology.normal_statements import contradicted_by

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


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of a whitespace-normalised text; a numbered item's marker
    ("2.") stays with its sentence."""
    spans: list[tuple[int, int]] = []
    start, marker_start = 0, None
    for end, following in [*((m.start(), m.end()) for m in _SENTENCE_END.finditer(text)),
                           (len(text), len(text))]:
        if _LIST_MARKER.fullmatch(text[start:end]):
            marker_start = start if marker_start is None else marker_start
        elif end > start:
            spans.append((start if marker_start is None else marker_start, end))
            marker_start = None
        start = following
    return spans


def split_sentences(text: str) -> list[str]:
    """Sentences of a findings text; a numbered item's marker ("2.") stays with its sentence."""
    normalised = " ".join(text.split())
    return [normalised[a:b] for a, b in _sentence_spans(normalised)]


def _contradicting_mentions(
    text: str, source: str | None, target: str, dropped_attributes: set[str],
    extractor: ConceptExtractor,
) -> list[int]:
    """Where `text` asserts or hedges the source, denies or hedges the target or a finding it is
    a kind of, states a normality the target contradicts, or states an attribute the plan
    removes or negates (start offsets). One pass over the whole text: the labeller's scopes end
    at sentence punctuation, so this equals a pass per sentence."""
    starts = [m.start for m in find_mentions(text)
              if m.label == source and m.status in (LABEL_POSITIVE, LABEL_UNCERTAIN)]
    starts += target_contradictions(text, target)
    if dropped_attributes:
        starts += [m.start for m in extractor.mentions(text)
                   if m.label in dropped_attributes and m.status == LABEL_POSITIVE]
    return starts


def target_contradictions(text: str, target: str) -> list[int]:
    """Where `text` denies or hedges `target` or a finding it is a kind of ("no focal
    consolidation" for pneumonia), or states a normality the target contradicts ("The lungs are
    clear." for a lung finding): start offsets of what a counterfactual toward it must drop."""
    denied = {target, *(parent for parent, kinds in HIERARCHY.items() if target in kinds)}
    starts = [m.start for m in find_mentions(text)
              if m.label in denied and m.status in (LABEL_NEGATIVE, LABEL_UNCERTAIN)]
    return starts + contradicted_by(text, target)


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
    text = " ".join(findings.split())
    dropped = {step.concept for step in (*plan.remove, *plan.negate)}
    flagged = _contradicting_mentions(text, source, plan.target, dropped, extractor)
    kept = [text[a:b] for a, b in _sentence_spans(text)
            if not any(a <= position < b for position in flagged)]
    negations = [f"No {step.concept}." for step in plan.negate]
    return " ".join([*kept, *negations, _target_sentence(plan)])

"""The offline concept-graph expert: applies a perturbation plan to findings text, deterministically.

Used when no LLM endpoint is configured, and named as such in every row it writes. It rewrites
the findings in place (`editing.rewrite`): the clauses stating the replaced disease, denying the
target or stating a normality it contradicts, and those stating an attribute the plan removes or
negates (unless the clause is how another diagnosis shows), go; the target is stated where they
stood, in the demo reports' phrase bank, at the side and lobe of what it replaces. Every other
word is kept. Its random choices (wording, a side the text does not fix) are seeded by the study
and the target, so a study's counterfactual is a function of its own inputs.
"""

from __future__ import annotations

import numpy as np

from cpo_pipeline.concepts.mentions import ConceptExtractor
from cpo_pipeline.concepts.ontology import SAME_SIDE
from cpo_pipeline.concepts.queries import PerturbationPlan, scoped_exclusion
from cpo_pipeline.counterfactuals.editing import delete_finding, rewrite
from cpo_pipeline.counterfactuals.sentences import split_sentences
from cpo_pipeline.radiology.chexpert import LABEL_POSITIVE, NO_FINDING
from cpo_pipeline.radiology.labeller import label_report
from cpo_pipeline.radiology.placement import placement_of
from cpo_pipeline.storage import content_hash

BACKEND = "offline-concept-graph"


def edit_rng(study_key: object, target: str) -> np.random.Generator:
    """The random stream of one counterfactual: the same study and target, the same text."""
    return np.random.default_rng(int(content_hash([str(study_key), target])[:16], 16))


SIDES = ("left", "right")


def _side_of(findings: str, source: str | None) -> str | None:
    """The side the text states `source` at (None: no source, or no side said)."""
    if source is None:
        return None
    for sentence in split_sentences(findings):
        if label_report(sentence).get(source) == LABEL_POSITIVE:
            return placement_of(sentence).side
    return None


def apply_plan(
    findings: str, plan: PerturbationPlan, source: str | None, extractor: ConceptExtractor,
    study_key: object,
) -> str:
    """The counterfactual findings: `findings` edited by `plan`, replacing `source` (None when
    nothing is to be removed, e.g. a normal study) with `plan.target`."""
    dropped = {step.concept for step in (*plan.remove, *plan.negate)}
    # An exclusion that holds on one side only spares an attribute stated on the other side
    # of where the target goes (the side of the finding it replaces).
    one_side = {step.concept for step in plan.negate if scoped_exclusion(step) == SAME_SIDE}
    target_side = _side_of(findings, source) if one_side else None

    def spared(label: str, sentence: str) -> bool:
        side = placement_of(sentence).side
        return (label in one_side and target_side in SIDES and side in SIDES
                and side != target_side)

    def attribute_starts(sentence: str) -> list[int]:
        return [m.start for m in extractor.mentions(sentence)
                if m.label in dropped and m.status == LABEL_POSITIVE
                and not spared(m.label, sentence)]

    rng, starts = edit_rng(study_key, plan.target), attribute_starts if dropped else None
    if plan.target == NO_FINDING:
        return delete_finding(findings, source, rng, attribute_starts=starts)
    return rewrite(findings, source, plan.target, rng, attribute_starts=starts)

"""What contradicts itself in a findings text: the rule the verifier refuses a counterfactual by
and the quality figures count with (`quality.contradiction_figures`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from cpo_pipeline.concepts.mentions import ConceptExtractor
from cpo_pipeline.concepts.ontology import ATTRIBUTE, Ontology, load_ontology
from cpo_pipeline.radiology.chexpert import DISEASES, HIERARCHY, LABEL_NEGATIVE, LABEL_POSITIVE
from cpo_pipeline.radiology.labeller import find_mentions
from cpo_pipeline.radiology.normal_statements import NORMAL_STATEMENTS, lowered


@dataclass(frozen=True)
class ContradictionReader:
    """What `contradictions` reads a text with: the ontology's attribute and location mentions,
    and which of those concepts are attributes."""

    extractor: ConceptExtractor
    attributes: frozenset[str]

    @classmethod
    def of(cls, ontology: Ontology) -> ContradictionReader:
        return cls(ConceptExtractor(ontology), frozenset(ontology.names(ATTRIBUTE)))


def contradictions(findings: str, reader: ContradictionReader | None = None) -> tuple[str, ...]:
    """What contradicts itself in one findings text, one reason per contradiction.

    Counted: (1) one of the 12 diseases both asserted and negated by the labeller's mentions
    ("No focal consolidation. ... consistent with consolidation."); (2) a disease asserted while
    its CheXpert parent is negated ("There is no focal consolidation." with pneumonia: the
    hierarchy says which label combinations a consistent report carries); (3) a radiographic
    attribute of the ontology both asserted and negated ("No Kerley B lines. Kerley B lines
    ..."); (4) a `NORMAL_STATEMENTS` phrase beside an asserted disease it contradicts ("The lungs
    are clear." with asserted pneumonia). Not counted: hedged mentions, locations, devices (a
    removed PICC and a chest tube in place are two devices), and "the lungs are well expanded"
    (it sits beside subsegmental atelectasis in real reports). Sides are not compared: "no left
    effusion" with "small right effusion" counts, the labeller having no laterality.
    """
    reader = reader or seed_reader()
    reasons = []
    statuses: dict[str, set[float]] = {}
    for mention in find_mentions(findings):
        if mention.label in DISEASES:
            statuses.setdefault(mention.label, set()).add(mention.status)
    attributes: dict[str, set[float]] = {}
    for mention in reader.extractor.mentions(findings):
        if mention.label in reader.attributes:
            attributes.setdefault(mention.label, set()).add(mention.status)
    for concepts in (statuses, attributes):
        reasons += [f"{name} asserted and negated" for name, seen in concepts.items()
                    if {LABEL_POSITIVE, LABEL_NEGATIVE} <= seen]
    asserted = {name for name, seen in statuses.items() if LABEL_POSITIVE in seen}
    reasons += [f"{child} asserted, its parent {parent} negated"
                for parent, children in HIERARCHY.items()
                if LABEL_NEGATIVE in statuses.get(parent, ()) for child in children
                if child in asserted]
    text = lowered(findings)
    for statement in NORMAL_STATEMENTS:
        if statement.pattern.search(text):
            reasons += [f"'{statement.phrase}' beside {disease}"
                        for disease in statement.contradicts if disease in asserted]
    return tuple(reasons)


@functools.cache
def seed_reader() -> ContradictionReader:
    """The reader of the shipped seed ontology, built once per process."""
    return ContradictionReader.of(load_ontology())

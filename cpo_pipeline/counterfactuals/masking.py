"""What the style gate hides of a trajectory: the concept vocabulary, sides, severities, numbers
and the answer line. What is left is the report's wording, not its content; a classifier that
still tells counterfactual from factual on it is reading style (`quality.style_accuracy`), and
the editor matches the shape of what it replaces on it (`statements`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from cpo_pipeline.concepts.mentions import phrase_pattern
from cpo_pipeline.concepts.ontology import Ontology, load_ontology
from cpo_pipeline.radiology.chexpert import DISEASES
from cpo_pipeline.radiology.labeller import MENTION_PHRASES
from cpo_pipeline.radiology.normal_statements import lowered

MASK = "[mask]"
LATERALITY_WORDS = (
    "left", "right", "bilateral", "bilaterally", "unilateral", "unilaterally", "bibasilar",
    "bibasal", "biapical", "bihilar", "ipsilateral", "contralateral", "both",
)
SEVERITY_WORDS = (
    "trace", "tiny", "minimal", "minimally", "small", "smaller", "mild", "mildly", "moderate",
    "moderately", "large", "larger", "severe", "severely", "massive", "extensive", "marked",
    "markedly", "slight", "slightly", "subtle", "faint", "significant", "substantial",
)
NUMBER_WORDS = (
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth",
    "ninth", "tenth", "eleventh", "twelfth",
)
# How a finding looks and how old it is, words of the attribute categories the seed ontology
# does not list one by one (morphology, density, chronicity): "a spiculated mass", "healed
# fractures", "dense consolidation" say what the finding is, not how the report is written.
DESCRIPTOR_WORDS = (
    "acute", "subacute", "chronic", "old", "healed", "healing", "nondisplaced", "displaced",
    "spiculated", "lobulated", "well-circumscribed", "patchy", "hazy", "dense", "focal",
    "multifocal", "plate-like", "subsegmental", "segmental", "layering", "loculated",
    "calcified", "interstitial", "multiple", "several", "numerous", "few", "single",
    "solitary", "scattered", "diffuse", "apical", "basilar", "retrocardiac", "adjacent",
)
_DIGITS = r"\d+(?:[.,]\d+)*(?:st|nd|rd|th)?"
# Masked spans separated only by spaces or hyphens become one placeholder: "small left pleural
# effusion" and "pneumothorax" mask alike, so swapping one finding for another leaves no trace.
_JOINS_MASKS = re.compile(r"[-\s]*")
_THINK = re.compile(r"^\s*<think>\s*(?P<findings>.*?)\s*</think>", re.DOTALL)
# Words of letters, and the placeholder: numbers are masked and punctuation is not a feature.
FEATURE_TOKEN = r"\[mask\]|[a-z]+"


@dataclass(frozen=True)
class ConceptMask:
    """The compiled patterns `mask_concepts` hides; build once with `concept_mask`."""

    patterns: tuple[re.Pattern[str], ...]


def _alternation(fragments: Sequence[str]) -> re.Pattern[str]:
    # Longest first, so that at one position the longest term wins.
    ordered = sorted(set(fragments), key=len, reverse=True)
    return re.compile(rf"\b(?:{'|'.join(ordered)})(?!\w)")


def concept_mask(ontology: Ontology) -> ConceptMask:
    """What the style gate hides: every term of every concept (the concept graph's nodes are the
    ontology's: diseases, observations, attributes, locations, each with its synonyms), the
    labeller's mention phrases of the 12 diseases (inflections the ontology does not list:
    "consolidative", "opacities", "heart size"), laterality and severity words, and numbers."""
    terms = [phrase_pattern(term) for concept in ontology.concepts
             for term in (concept.name, *concept.synonyms)]
    labeller = [fragment.replace(" ", r"\s+") for disease in DISEASES
                for fragment in (*MENTION_PHRASES[disease].findings,
                                 *MENTION_PHRASES[disease].descriptors)]
    words = [*LATERALITY_WORDS, *SEVERITY_WORDS, *NUMBER_WORDS, *DESCRIPTOR_WORDS]
    return ConceptMask((_alternation(terms), _alternation(labeller), _alternation(words),
                        re.compile(rf"(?<![\w.]){_DIGITS}(?!\w)")))


def findings_of(text: str) -> str:
    """The thinking part of a trajectory (the answer line dropped); other text as it is."""
    match = _THINK.match(text)
    return match.group("findings") if match else text


def mask_concepts(text: str, mask: ConceptMask) -> str:
    """`text` lower-cased, its answer line dropped and every span `mask` covers replaced by one
    `MASK` (adjacent spans share one): what is left is the report's wording, not its content."""
    text = lowered(" ".join(findings_of(text).split()))
    spans = sorted(match.span() for pattern in mask.patterns for match in pattern.finditer(text))
    pieces, merged_end, position = [], None, 0
    for start, end in spans:
        if merged_end is not None and (start <= merged_end or _JOINS_MASKS.fullmatch(
                text[merged_end:start])):
            merged_end = max(merged_end, end)
            continue
        if merged_end is not None:
            pieces.append(MASK)
            position = merged_end
        pieces.append(text[position:start])
        merged_end = end
    if merged_end is not None:
        pieces.append(MASK)
        position = merged_end
    pieces.append(text[position:])
    return " ".join("".join(pieces).split())


@cache
def seed_mask() -> ConceptMask:
    """The mask of the shipped seed ontology, built once."""
    return concept_mask(load_ontology())

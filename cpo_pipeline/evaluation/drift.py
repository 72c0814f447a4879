"""Drift probes: does a model's diagnosis follow what its reasoning says, and only that?

- Synonym swaps (the paper's Fig. 1, "opacity" vs "lung opacity"): the concept graph's own
  synonyms give pairs of terms that mean the same; swapping one for the other in a thinking text
  must not change the diagnosis (`synonym_pairs`, `swap_synonym`, `flip_rate`).
- Faithfulness: with a thinking teacher-forced, the answer should name what that thinking
  asserts (`follow_rate`), the factual and the counterfactual thinking alike.
- Reasoning distance: the Jensen-Shannon divergence between how often each attribute of the
  graph is mentioned in a model's reasoning and in the radiologists' findings
  (`attribute_divergence`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from functools import cache

from cpo_pipeline.concepts.mentions import ConceptExtractor, phrase_pattern
from cpo_pipeline.concepts.ontology import ATTRIBUTE, DISEASE, OBSERVATION, Ontology
from cpo_pipeline.radiology.answer_format import positive_diseases
from cpo_pipeline.radiology.labeller import label_report


def synonym_pairs(ontology: Ontology) -> list[tuple[str, str, str]]:
    """(concept, term, synonym) for every synonym of every disease, observation and attribute:
    two ways of saying the same thing ("Lung Opacity": "opacity" / "lung opacity")."""
    pairs = []
    for concept in ontology.concepts:
        if concept.kind not in (DISEASE, OBSERVATION, ATTRIBUTE):
            continue
        terms = [concept.name.lower(), *(s.lower() for s in concept.synonyms)]
        pairs += [(concept.name, terms[0], other) for other in terms[1:] if other != terms[0]]
    return pairs


@cache
def _term_pattern(term: str) -> re.Pattern[str]:
    return re.compile(rf"\b{phrase_pattern(term)}(?!\w)", flags=re.IGNORECASE)


def swap_synonym(text: str, term: str, synonym: str) -> str | None:
    """`text` with its first whole-word `term` (case-insensitive) said as `synonym`, the rest
    unchanged; None when the term is not in it."""
    match = _term_pattern(term).search(text)
    if match is None:
        return None
    said = synonym[0].upper() + synonym[1:] if match.group(0)[0].isupper() else synonym
    return text[:match.start()] + said + text[match.end():]


def swapped_variants(text: str, pairs: Sequence[tuple[str, str, str]], limit: int = 3
                     ) -> list[tuple[str, str, str]]:
    """Up to `limit` (term, synonym, swapped text) of `text`, each swapping one term either way
    (a term to its synonym, or a synonym back to its term)."""
    found = []
    for _, term, synonym in pairs:
        for said, other in ((term, synonym), (synonym, term)):
            swapped = swap_synonym(text, said, other)
            if swapped is not None and swapped != text:
                found.append((said, other, swapped))
                break
        if len(found) == limit:
            break
    return found


def flip_rate(before: Sequence[tuple[str, ...] | None], after: Sequence[tuple[str, ...] | None]
              ) -> float | None:
    """Share of answers whose named diagnoses differ between the two readings (an unparsed
    answer, None, differs from anything); None with nothing to compare."""
    if len(before) != len(after):
        raise ValueError(f"{len(before)} answers before and {len(after)} after")
    if not before:
        return None
    flipped = sum(a is None or b is None or set(a) != set(b) for a, b in zip(before, after,
                                                                              strict=True))
    return flipped / len(before)


def follow_rate(thinking: Sequence[str], answers: Sequence[tuple[str, ...] | None]
                ) -> float | None:
    """Share of answers naming exactly the diseases their (teacher-forced) thinking asserts, as
    the labeller reads it ("No Finding" when it asserts none); None with nothing to compare."""
    if len(thinking) != len(answers):
        raise ValueError(f"{len(thinking)} thinking texts and {len(answers)} answers")
    if not thinking:
        return None
    follows = sum(answer is not None and set(answer) == set(positive_diseases(label_report(text)))
                  for text, answer in zip(thinking, answers, strict=True))
    return follows / len(thinking)


def attribute_frequencies(texts: Sequence[str], extractor: ConceptExtractor,
                          ontology: Ontology) -> Counter[str]:
    """How many of `texts` mention each attribute of the ontology (asserted or not)."""
    attributes = {c.name for c in ontology.concepts if c.kind == ATTRIBUTE}
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update({m.label for m in extractor.mentions(text or "") if m.label in attributes})
    return counts


def jensen_shannon(first: Counter[str], second: Counter[str]) -> float | None:
    """The Jensen-Shannon divergence (base 2: 0 same, 1 disjoint) of two count distributions;
    None when either is empty."""
    total_first, total_second = sum(first.values()), sum(second.values())
    if total_first == 0 or total_second == 0:
        return None
    divergence = 0.0
    for key in set(first) | set(second):
        p, q = first[key] / total_first, second[key] / total_second
        m = (p + q) / 2
        divergence += (p * math.log2(p / m) if p else 0.0) + (q * math.log2(q / m) if q else 0.0)
    return divergence / 2


def attribute_divergence(generated: Sequence[str], reference: Sequence[str],
                         extractor: ConceptExtractor, ontology: Ontology) -> float | None:
    """JSD between the attribute-mention frequencies of generated and reference findings."""
    return jensen_shannon(attribute_frequencies(generated, extractor, ontology),
                          attribute_frequencies(reference, extractor, ontology))

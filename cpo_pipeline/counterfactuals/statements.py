"""The statements an edit writes: a finding asserted or denied in the demo reports' words.

Wording comes from the phrase bank (`radiology.phrase_bank`); side, lobe and size from the
statement replaced (`radiology.placement`), otherwise drawn from `rng`. Given the text it stands
in for, a statement is shaped like it (`_like`: the same masked n-grams if any fitting phrasing
has them, else as many masked spans and words), so the style gate sees no change there; given
none, it is drawn as the reports draw theirs (`positive_statement`, `uses_negative_sentence`).
"""

from __future__ import annotations

import re
from collections import Counter
from itertools import pairwise

import numpy as np

from cpo_pipeline.counterfactuals.masking import FEATURE_TOKEN, MASK, mask_concepts, seed_mask
from cpo_pipeline.radiology.phrase_bank import (
    LOBES,
    NEGATIONS,
    PHRASINGS,
    SIGNS,
    draw_slots,
    pick,
    positive_statement,
    sentence,
    uses_negative_sentence,
)
from cpo_pipeline.radiology.placement import BILATERAL, Placement, placement_of


def _lobe(placement: Placement, rng: np.random.Generator) -> str:
    fitting = [lobe for lobe in LOBES
               if placement.side in (None, BILATERAL) or lobe.startswith(placement.side)]
    fitting = [lobe for lobe in fitting if placement.zone is None or placement.zone in lobe] or fitting
    return fitting[int(rng.integers(len(fitting)))]


def _slots(placement: Placement, rng: np.random.Generator) -> dict[str, str]:
    slots = draw_slots(rng)
    if placement.side in ("right", "left"):
        slots["side"] = placement.side
    slots["lobe"] = _lobe(placement, rng)
    if placement.extent is not None:
        slots["size"] = ("small" if placement.extent < 0.7 else
                         "moderate" if placement.extent < 0.9 else "large")
        slots["degree"] = ("mild" if placement.extent < 0.7 else
                           "moderate" if placement.extent < 0.9 else "severe")
    return slots


def _fits(text: str, wanted: Placement) -> bool:
    said = placement_of(text)
    if wanted.side in ("right", "left") and said.side not in (None, wanted.side):
        return False
    return not (wanted.side == BILATERAL and said.side in ("right", "left"))


def _shape(text: str) -> Counter[str]:
    """What the style gate still sees of a statement: its word uni- and bi-grams once masked."""
    words = re.findall(FEATURE_TOKEN, mask_concepts(text, seed_mask()))
    return Counter([*words, *(f"{a} {b}" for a, b in pairwise(words))])


def _like(candidates: list[str], replaced: str | None, rng: np.random.Generator) -> str:
    """One of `candidates`, drawn among those whose shape (`_shape`) is closest to the text
    they replace (any, when they replace nothing): a rewritten statement then reads, to the
    style gate, as much as possible like what stood there, so its form tells nothing."""
    if replaced is None:
        return candidates[int(rng.integers(len(candidates)))]
    wanted = _shape(replaced)
    shapes = [_shape(text) for text in candidates]
    same = [text for text, shape in zip(candidates, shapes, strict=True) if shape == wanted]
    if same:
        return same[int(rng.integers(len(same)))]
    # Else as many placeholders and words as what stood there.
    wanted_masks, wanted_words = wanted[MASK], sum(n for g, n in wanted.items() if " " not in g)
    distance = [2 * abs(shape[MASK] - wanted_masks)
                + abs(sum(n for g, n in shape.items() if " " not in g) - wanted_words)
                for shape in shapes]
    best = min(distance)
    near = [text for text, d in zip(candidates, distance, strict=True) if d <= best + 1]
    return near[int(rng.integers(len(near)))]


def _with_signs(phrases: list[str], target: str) -> list[str]:
    return [*phrases, *(f"{text} with {sign}" for text in phrases for sign in SIGNS.get(target, ()))]


def target_statement(
    target: str, placement: Placement, rng: np.random.Generator, replaced: str | None = None
) -> str:
    """A sentence asserting `target` in the phrase bank's words, at `placement` where it says
    one (side, lobe, size), with or without one of its signs: shaped like the positive
    statement it stands in for (`replaced`), else drawn as a report draws it
    (`positive_statement`)."""
    slots = _slots(placement, rng)
    templates = PHRASINGS[target].positive
    fitting = tuple(t for t in templates if _fits(t.format(**slots), placement)) or templates
    if replaced is None:
        return sentence(positive_statement(target, slots, rng, fitting))
    phrasings = [template.format(**slots) for template in fitting]
    return sentence(_like(_with_signs(phrasings, target), replaced, rng))


def denial_statement(
    label: str, placement: Placement, rng: np.random.Generator, replaced: str | None = None
) -> str:
    """A sentence saying `label` is absent, as the demo reports say it ("No pleural effusion.",
    "The previously seen left pleural effusion has resolved."): shaped like `replaced`, else
    drawn as a report draws it (`uses_negative_sentence`)."""
    phrasing = PHRASINGS[label]
    slots = _slots(placement, rng)
    if replaced is None:
        if uses_negative_sentence(label, rng):
            return sentence(pick(rng, phrasing.negative_sentences).format(**slots))
        return sentence(pick(rng, NEGATIONS).format(pick(rng, phrasing.negated)))
    candidates = [t.format(**slots) for t in phrasing.negative_sentences]
    candidates += [frame.format(phrase) for frame in NEGATIONS for phrase in phrasing.negated]
    return sentence(_like(candidates, replaced, rng))


# A phrase that reads inside another sentence ("... with adjacent atelectasis"), not a clause
# with its own verb ("there is a small left pneumothorax").
_CLAUSE_VERB = re.compile(r"^(?:there|findings|the)\b|\b(?:is|are|terminates|courses)\b")


def target_phrase(
    target: str, placement: Placement, rng: np.random.Generator, replaced: str | None = None
) -> str | None:
    """The target as a noun phrase to stand in another finding's clause (shaped like
    `replaced`), or None if the phrase bank has none."""
    slots = _slots(placement, rng)
    phrases = [t.format(**slots) for t in PHRASINGS[target].positive if not _CLAUSE_VERB.search(t)]
    fitting = [text for text in phrases if _fits(text, placement)] or phrases
    return _like(fitting, replaced, rng) if fitting else None

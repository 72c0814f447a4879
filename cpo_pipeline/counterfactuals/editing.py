"""In-place edits of a findings text: the minimal rewrite that turns one finding into another.

A counterfactual must differ from its factual report only in what the image would have to show
(the paper's examples: one or two findings inserted, deleted or negation-flipped in place, the
rest kept). `rewrite` does that, clause by clause, keeping every other word:

1. Every clause stating what must go is removed: the replaced (source) disease asserted or
   hedged, the target denied or hedged or a finding it is a kind of denied ("no focal
   consolidation" for pneumonia), a normality the target contradicts ("The lungs are clear."),
   and attributes the caller drops (unless the clause is how another diagnosis shows);
   `sentences` says what a clause is and how a list reads with one cut out. A sentence whose
   other findings would read differently without the clause is removed whole.
2. The target is stated where its denial or the normality it contradicts stood, else where the
   source stood (inside the source's sentence when the source was one clause of it), else in
   reading order (devices, lungs, pleura, heart, bones); when the target takes its denial's
   place, the source is denied where it was stated (the two swap); an added finding with a pair
   partner already stated may join its sentence as reports pair them ("... effusion with
   adjacent atelectasis", at `PAIRED_RATE`). The words come from `statements`: a statement
   standing where the source stood is shaped like it, so the style gate sees no change there;
   one standing for a denial or a normality, or in reading order, is drawn as the reports draw
   theirs, the mirror of a deletion, whose denial is drawn the same way and may join a negation
   list the report already has (`LISTED_DENIAL_RATE`).
3. A numbered list is renumbered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from cpo_pipeline.counterfactuals.contradictions import contradictions
from cpo_pipeline.counterfactuals.sentences import (
    AttributeStarts,
    Sentence,
    cut_clauses,
    labels_of,
    parse_sentences,
    removed_starts,
    renumbered,
    sentence_text,
)
from cpo_pipeline.counterfactuals.statements import (
    denial_statement,
    target_phrase,
    target_statement,
)
from cpo_pipeline.radiology.chexpert import LABEL_NEGATIVE, LABEL_POSITIVE, LABEL_UNCERTAIN
from cpo_pipeline.radiology.labeller import find_mentions
from cpo_pipeline.radiology.normal_statements import NORMAL_STATEMENTS, lowered
from cpo_pipeline.radiology.phrase_bank import (
    EXPLICIT_NEGATIVE_RATE,
    FINDINGS_ORDER,
    LUNG_FINDINGS,
    LUNGS_CLEAR,
    LUNGS_CLEAR_RATE,
    LUNGS_WELL_EXPANDED,
    LUNGS_WELL_EXPANDED_RATE,
    NO_OSSEOUS_ABNORMALITY,
    NO_OSSEOUS_ABNORMALITY_RATE,
    PAIRED_CLAUSES,
    PAIRED_RATE,
    PHRASINGS,
    listed,
    pick,
    sentence,
)
from cpo_pipeline.radiology.placement import Placement, placement_of

_OSSEOUS = re.compile(r"\b(?:osseous|bony|skeletal)\b", re.IGNORECASE)


@dataclass
class _Slot:
    """Where a removed statement stood in the edited sentence list, and what it said."""

    position: int
    placement: Placement
    whole: bool  # the statement was a sentence of its own, not a clause of one left standing
    removed: str  # the words removed
    sentence: Sentence | None = None  # the sentence left standing, when a clause went


def rewrite(
    findings: str,
    source: str | None,
    target: str,
    rng: np.random.Generator,
    *,
    attribute_starts: AttributeStarts | None = None,
) -> str:
    """`findings` with `source` (None: nothing to replace) turned into `target`, in place (see
    the module docstring). `attribute_starts(sentence)` gives start offsets of further
    statements to remove, e.g. attributes a perturbation plan drops.

    Where the target had a denial (or a normality it contradicts), it is stated there, and the
    source, if any, is denied where it was stated: the two swap (in a negation list, the source
    takes the target's place: "S. No A or T." -> "T. No A or S."); a denial that would
    contradict what stays (the parent of a kept finding) is not made, the source's statement
    just goes. Otherwise the target takes the source's place (inside its sentence when the
    source was one clause of it: "Large left pleural effusion with adjacent atelectasis." ->
    "Severe pulmonary edema with adjacent atelectasis."); with no source it is stated in
    reading order. Each new statement is shaped like the one it replaces (`statements`)."""
    sentences = parse_sentences(findings)
    edited: list[Sentence] = []
    source_slot = target_slot = None
    for s in sentences:
        removed = removed_starts(s.body, source, target, attribute_starts)
        if not removed.all:
            edited.append(s)
            continue
        cut = cut_clauses(s.body, removed.all)
        said = placement_of(cut.removed)
        if said == Placement():  # "consistent with pneumonia": where is in the clause kept
            said = placement_of(s.body)
        kept = Sentence(s.marker, cut.remaining) if cut.remaining is not None else None
        slot = _Slot(len(edited) + (kept is not None), said, not cut.partial, cut.removed, kept)
        if removed.source and source_slot is None:
            source_slot = slot
            source_slot.sentence = s if cut.partial else None  # the original, to edit in place
        elif (removed.denial or removed.normal) and target_slot is None:
            target_slot = slot
            target_slot.sentence = s if cut.partial else None
        if kept is not None:
            edited.append(kept)
    inserts = _fill(edited, source, target, source_slot, target_slot, rng)
    # Later positions first, so earlier ones stay where they were; at one position the first
    # listed is inserted last, so it ends up first.
    order = sorted(range(len(inserts)), key=lambda i: (-inserts[i][0], -i))
    for position, text in (inserts[i] for i in order):
        edited.insert(position, Sentence(None, text))
    return renumbered(sentences, edited)


def delete_finding(
    findings: str,
    source: str,
    rng: np.random.Generator,
    *,
    attribute_starts: AttributeStarts | None = None,
) -> str:
    """`findings` with `source` deleted in place: the report as it would read had the finding
    not been there, written the way the phrase bank's reports are (the mirror of stating a
    target in a normal report, so that neither direction has a tell).

    Every clause stating the source (asserted or hedged) goes, with the attributes
    `attribute_starts` marks; a clause of a sentence that stays just goes ("Effusion with
    adjacent atelectasis." -> "Effusion."). Where the source was a sentence of its own, its
    denial takes that place at the rate reports deny an absent finding
    (`EXPLICIT_NEGATIVE_RATE`; the negation flip "Small right pleural effusion." -> "No
    pleural effusion."), worded as reports word theirs, or joins a negation list the report
    already has (`LISTED_DENIAL_RATE`: "No pneumothorax." -> "No pneumothorax or pleural
    effusion."). When no lung finding is left, "The lungs are clear." is said at
    `LUNGS_CLEAR_RATE`, after the devices where reports say it (with the atelectasis gone but
    another lung finding left, "The lungs are well expanded." at `LUNGS_WELL_EXPANDED_RATE`),
    and with the fracture gone "No acute osseous abnormality." at
    `NO_OSSEOUS_ABNORMALITY_RATE`, unless already said; a report left with nothing to say gets
    the denial. Nothing that would contradict what stays is written. A numbered list is
    renumbered."""
    sentences = parse_sentences(findings)
    edited: list[Sentence] = []
    slot: _Slot | None = None
    for s in sentences:
        removed = removed_starts(s.body, source, None, attribute_starts)
        if not removed.all:
            edited.append(s)
            continue
        cut = cut_clauses(s.body, removed.all)
        if cut.remaining is not None:
            edited.append(Sentence(s.marker, cut.remaining))
        elif removed.source and slot is None:
            slot = _Slot(len(edited), placement_of(cut.removed), True, cut.removed)
    position = slot.position if slot else _reading_position(edited, source)
    said = []
    if slot is not None and rng.random() < EXPLICIT_NEGATIVE_RATE[source] and not (
            rng.random() < LISTED_DENIAL_RATE and _join_negation_list(edited, source, rng)):
        said.append(denial_statement(source, slot.placement, rng))
    lungs = _lungs_normality(edited, source, rng)
    if (source == "Fracture" and rng.random() < NO_OSSEOUS_ABNORMALITY_RATE
            and not _OSSEOUS.search(lowered(" ".join(sentence_text(s) for s in edited)))):
        edited.append(Sentence(None, sentence(NO_OSSEOUS_ABNORMALITY)))
    if not edited and not said:  # a report says something: here, that the finding is gone
        said.append(denial_statement(source, slot.placement if slot else Placement(), rng,
                                     slot.removed if slot else None))
    for statement in reversed(said):
        if not _contradicts_what_stays(edited, statement):
            edited.insert(position, Sentence(None, statement))
    if lungs is not None and not _contradicts_what_stays(edited, lungs):
        # Where reports say it: first after the devices.
        edited.insert(_after_devices(edited), Sentence(None, lungs))
    return renumbered(sentences, edited)


def _reading_position(sentences: list[Sentence], target: str) -> int:
    """Where a statement of `target` goes in anatomical reading order: before the first
    sentence about anatomy read after it (one with no finding takes its neighbour's place;
    bones come last)."""
    rank = FINDINGS_ORDER.index(target)
    previous = -1
    for index, s in enumerate(sentences):
        labels = [FINDINGS_ORDER.index(m.label) for m in find_mentions(s.body)
                  if m.label in FINDINGS_ORDER]
        position = (min(labels) if labels else
                    len(FINDINGS_ORDER) if _OSSEOUS.search(s.body) else previous)
        if position > rank:
            return index
        previous = position
    return len(sentences)


def _after_devices(edited: list[Sentence]) -> int:
    """The index after the sentences about devices the findings open with."""
    for index, s in enumerate(edited):
        if "Support Devices" not in labels_of(s.body):
            return index
    return len(edited)


# How often a deletion's denial joins a negation list the report already has ("No pneumothorax."
# -> "No pneumothorax or pleural effusion.") rather than standing alone: the reports list two or
# three absent findings together about this often, and an insertion takes its target out of
# such lists as often.
LISTED_DENIAL_RATE = 0.6
_LISTED = re.compile(r"^(?P<frame>no evidence of|there is no|no) (?P<items>[^.;]+)\.$",
                     re.IGNORECASE)


def _join_negation_list(edited: list[Sentence], label: str, rng: np.random.Generator) -> bool:
    """Add `label`'s negated phrase to a negation list of `edited` with fewer than three items
    (the reports' longest), in place; False if there is none or it would not read back."""
    negated = PHRASINGS[label].negated
    lists = []
    for index, s in enumerate(edited):
        match = _LISTED.match(s.body)
        if match is None:
            continue
        items = [item for item in re.split(r",\s*(?:or\s+)?|\s+or\s+", match["items"]) if item]
        labels = labels_of(s.body)
        if len(items) < 3 and labels and all(v == LABEL_NEGATIVE for v in labels.values()):
            lists.append((index, match["frame"], items))
    if not negated or not lists:
        return False
    index, frame, items = lists[int(rng.integers(len(lists)))]
    body = f"{frame} {listed([*items, pick(rng, negated)])}."
    if labels_of(body).get(label) != LABEL_NEGATIVE:
        return False
    edited[index] = Sentence(edited[index].marker, body)
    return True


def _lungs_normality(
    edited: list[Sentence], removed: str, rng: np.random.Generator
) -> str | None:
    """What the lungs are said to be once the lung finding `removed` has gone from `edited`
    (None: nothing): "The lungs are clear." when no lung finding is left, "The lungs are well
    expanded." at `LUNGS_WELL_EXPANDED_RATE` when the atelectasis went but another lung
    finding stays, each at the rate reports say it; never where the lungs are already
    described."""
    text = lowered(" ".join(sentence_text(s) for s in edited))
    if removed not in LUNG_FINDINGS or any(
            statement.pattern.search(text) for statement in NORMAL_STATEMENTS
            if statement.phrase.startswith("the lungs")):
        return None
    if not any(labels_of(text).get(d) in (LABEL_POSITIVE, LABEL_UNCERTAIN)
               for d in LUNG_FINDINGS):
        return sentence(LUNGS_CLEAR) if rng.random() < LUNGS_CLEAR_RATE else None
    if removed == "Atelectasis" and rng.random() < LUNGS_WELL_EXPANDED_RATE:
        return sentence(LUNGS_WELL_EXPANDED)
    return None


def _fill(
    edited: list[Sentence], source: str | None, target: str, source_slot: _Slot | None,
    target_slot: _Slot | None, rng: np.random.Generator,
) -> list[tuple[int, str]]:
    """What to insert where (positions in `edited`), editing sentences of `edited` in place
    when the target goes inside one."""
    def stated(slot: _Slot | None, placement: Placement) -> str:
        # Only a statement of the source is matched in shape: one standing for a denial or a
        # normality is drawn as reports draw it, the mirror of how a deletion denies.
        replaced = slot.removed if slot is not None and slot is source_slot else None
        return target_statement(target, placement, rng, replaced)

    if source_slot is None:
        if rng.random() < PAIRED_RATE and _attach_to_partner(edited, target, rng):
            return []
        if target_slot is not None and target_slot.whole:
            return [(target_slot.position, stated(target_slot, target_slot.placement))]
        position = target_slot.position if target_slot else _reading_position(edited, target)
        return [(position, stated(None, Placement()))]
    if (target_slot is not None and not target_slot.whole and source_slot.whole
            and _swap_into_list(edited, target_slot, source, target, rng)):
        # "S. No A or T." -> "T. No A or S.": the source takes the target's place in the list.
        return [(source_slot.position, stated(source_slot, source_slot.placement))]
    if target_slot is not None and source_slot.whole:
        denial = denial_statement(source, source_slot.placement, rng)
        if not _contradicts_what_stays(edited, denial):
            # The finding moves: the target keeps the replaced one's side unless its denial had one.
            placement = (target_slot.placement if target_slot.placement.side
                         else source_slot.placement)
            statement = stated(target_slot, placement)
            return [(source_slot.position, denial), (target_slot.position, statement)]
    if target_slot is not None:
        return [(target_slot.position, stated(target_slot, source_slot.placement))]
    if not source_slot.whole:
        phrase = target_phrase(target, source_slot.placement, rng, source_slot.removed)
        index = source_slot.position - 1
        if phrase is not None and _replace_source_clause(edited, index, source_slot, source,
                                                         target, phrase):
            return []
    return [(source_slot.position, stated(source_slot, source_slot.placement))]


def _attach_to_partner(edited: list[Sentence], target: str, rng: np.random.Generator) -> bool:
    """State `target` as a clause of its pair partner's statement (`PAIRED_CLAUSES`: "Small
    left pleural effusion." -> "Small left pleural effusion with adjacent atelectasis."), the
    way reports state the two together; False if no sentence states the partner alone."""
    if target not in PAIRED_CLAUSES:
        return False
    partner, clauses = PAIRED_CLAUSES[target]
    for index, s in enumerate(edited):
        if labels_of(s.body) != {partner: LABEL_POSITIVE} or " with " in s.body:
            continue
        body = f"{s.body.rstrip('.')} {pick(rng, clauses)}."
        if labels_of(body) == {partner: LABEL_POSITIVE, target: LABEL_POSITIVE}:
            edited[index] = Sentence(s.marker, body)
            return True
    return False


def _contradicts_what_stays(edited: list[Sentence], denial: str) -> bool:
    return bool(contradictions(" ".join([*(sentence_text(s) for s in edited), denial])))


def _swap_into_list(
    edited: list[Sentence], slot: _Slot, source: str, target: str, rng: np.random.Generator
) -> bool:
    """Put the source's negated phrase where the target's was in a negation list (the slot's
    original sentence, now `edited[slot.position - 1]` without it); False if it cannot."""
    negated = PHRASINGS[source].negated
    original = slot.sentence
    if not negated or original is None:
        return False
    starts = [m.start for m in find_mentions(original.body)
              if m.label == target and m.status == LABEL_NEGATIVE]
    if not starts:
        return False
    cut = cut_clauses(original.body, starts, replacement=pick(rng, negated))
    if cut.remaining is None or labels_of(cut.remaining).get(source) != LABEL_NEGATIVE:
        return False
    swapped = [*edited]
    swapped[slot.position - 1] = Sentence(original.marker, cut.remaining)
    if contradictions(" ".join(sentence_text(s) for s in swapped)):
        return False
    edited[slot.position - 1] = swapped[slot.position - 1]
    return True


def _replace_source_clause(
    edited: list[Sentence], index: int, slot: _Slot, source: str, target: str, phrase: str
) -> bool:
    """Put `phrase` where the source's clause was in its sentence (`slot.sentence`, the
    original, now `edited[index]` without the clause); False if it does not read back right."""
    original = slot.sentence
    starts = [m.start for m in find_mentions(original.body)
              if m.label == source and m.status in (LABEL_POSITIVE, LABEL_UNCERTAIN)]
    cut = cut_clauses(original.body, starts, replacement=phrase)
    if cut.remaining is None or labels_of(cut.remaining).get(target) != LABEL_POSITIVE:
        return False
    edited[index] = Sentence(original.marker, cut.remaining)
    return True

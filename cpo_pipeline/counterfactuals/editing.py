"""In-place edits of a findings text: the minimal rewrite that turns one finding into another.

A counterfactual must differ from its factual report only in what the image would have to show
(the paper's examples: one or two findings inserted, deleted or negation-flipped in place, the
rest kept). `rewrite` does that, clause by clause, keeping every other word:

1. Every clause stating what must go is removed: the replaced (source) disease asserted or
   hedged, the target denied or hedged or a finding it is a kind of denied ("no focal
   consolidation" for pneumonia), a normality the target contradicts ("The lungs are clear."),
   and attributes the caller drops (unless the clause is how another diagnosis shows). A clause
   is a part of a sentence between commas, "and", "or", "with", "versus", "consistent with" or
   semicolons; clauses that name no finding ("with a meniscus", "findings are") go with the
   finding they qualify. A list keeps its frame and its conjunction: "No pleural effusion,
   pneumothorax, or consolidation." less the pneumothorax is "No pleural effusion or
   consolidation.". A sentence whose other findings would read differently without the clause
   is removed whole.
2. The target is stated where its denial or the normality it contradicts stood, else where the
   source stood (inside the source's sentence when the source was one clause of it), else in
   reading order (devices, lungs, pleura, heart, bones); when the target takes its denial's
   place, the source is denied where it was stated (the two swap); an added finding with a pair
   partner already stated may join its sentence as reports pair them ("... effusion with
   adjacent atelectasis", at `PAIRED_RATE`). Wording comes from the demo reports' phrase bank
   (`radiology.phrase_bank`), side, lobe and size from the statement replaced
   (`radiology.placement`), otherwise drawn from `rng`. A statement standing where the source
   stood is shaped like it (`_like`: the same masked n-grams if any fitting phrasing has them,
   else as many masked spans and words), so the style gate sees no change there; one standing
   for a denial or a normality, or in reading order, is drawn as the reports draw theirs
   (`positive_statement`), the mirror of a deletion, whose denial is drawn the same way and
   may join a negation list the report already has (`LISTED_DENIAL_RATE`).
3. A numbered list is renumbered.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from cpo_pipeline.counterfactuals.contradictions import contradictions
from cpo_pipeline.counterfactuals.masking import FEATURE_TOKEN, MASK, mask_concepts, seed_mask
from cpo_pipeline.radiology.chexpert import (
    HIERARCHY,
    LABEL_NEGATIVE,
    LABEL_POSITIVE,
    LABEL_UNCERTAIN,
    NO_FINDING,
)
from cpo_pipeline.radiology.labeller import find_mentions, label_report
from cpo_pipeline.radiology.normal_statements import NORMAL_STATEMENTS, contradicted_by, lowered
from cpo_pipeline.radiology.phrase_bank import (
    EXPLICIT_NEGATIVE_RATE,
    FINDINGS_ORDER,
    LOBES,
    LUNG_FINDINGS,
    LUNGS_CLEAR,
    LUNGS_CLEAR_RATE,
    LUNGS_WELL_EXPANDED,
    LUNGS_WELL_EXPANDED_RATE,
    NEGATIONS,
    NO_OSSEOUS_ABNORMALITY,
    NO_OSSEOUS_ABNORMALITY_RATE,
    PAIRED_CLAUSES,
    PAIRED_RATE,
    PHRASINGS,
    SIGNS,
    draw_slots,
    listed,
    pick,
    positive_statement,
    sentence,
    uses_negative_sentence,
)
from cpo_pipeline.radiology.placement import BILATERAL, Placement, placement_of

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")
_LIST_MARKER = re.compile(r"\d+\.")
# Between clauses. "consistent with" before "with", so the longer wins at one position.
_CLAUSE_BREAK = re.compile(
    r",\s+(?:and|or)\s+|;\s+|,\s+|\s+(?:consistent|compatible)\s+with\s+|\s+versus\s+"
    r"|\s+(?:and|or|with)\s+")
_LIST_BREAK = re.compile(r",(?:\s+(?:and|or))?\s+|\s+(?:and|or)\s+")
# A frame leading a list, which the list keeps when its first item goes: "no", "possible" ...
_FRAME = re.compile(r"^(?:there (?:is|are) no|no evidence of|no|possible|cannot exclude|"
                    r"questionable|there is|there are)\s+", re.IGNORECASE)
_OSSEOUS = re.compile(r"\b(?:osseous|bony|skeletal)\b", re.IGNORECASE)


@dataclass
class _Sentence:
    """One sentence of the findings: its list marker ("2.") if numbered, and its words."""

    marker: str | None
    body: str


def split_sentences(text: str) -> list[str]:
    """Sentences of a findings text; a numbered item's marker ("2.") stays with its sentence."""
    return [_joined(s) for s in _sentences(text)]


def _joined(s: _Sentence) -> str:
    return f"{s.marker} {s.body}" if s.marker else s.body


def _sentences(text: str) -> list[_Sentence]:
    text = " ".join(text.split())
    found: list[_Sentence] = []
    start, marker = 0, None
    for end, following in [*((m.start(), m.end()) for m in _SENTENCE_END.finditer(text)),
                           (len(text), len(text))]:
        piece = text[start:end]
        if _LIST_MARKER.fullmatch(piece):
            marker = piece
        elif piece:
            found.append(_Sentence(marker, piece))
            marker = None
        start = following
    return found


# ---------------------------------------------------------------------------------------------
# What to remove

AttributeStarts = Callable[[str], list[int]]


@dataclass(frozen=True)
class _Removed:
    """Start offsets, in one sentence, of what a rewrite removes: statements of the source
    (asserted or hedged), denials of the target or a finding it is a kind of, normalities the
    target contradicts, and attributes the caller drops."""

    source: list[int]
    denial: list[int]
    normal: list[int]
    attribute: list[int]

    @property
    def all(self) -> list[int]:
        return self.source + self.denial + self.normal + self.attribute


def _removed_starts(
    body: str, source: str | None, target: str | None, attribute_starts: AttributeStarts | None
) -> _Removed:
    """What goes of one sentence; with no `target` (a deletion) nothing is denied or normal."""
    parents = {parent for parent, kinds in HIERARCHY.items() if target in kinds}
    mentions = find_mentions(body)
    of_source = [m.start for m in mentions
                 if m.label == source and m.status in (LABEL_POSITIVE, LABEL_UNCERTAIN)]
    # A hedged parent ("cannot exclude consolidation" beside pneumonia) is no contradiction.
    denial = [m.start for m in mentions
              if (m.label == target and m.status in (LABEL_NEGATIVE, LABEL_UNCERTAIN))
              or (m.label in parents and m.status == LABEL_NEGATIVE)]
    attribute = []
    if attribute_starts is not None:
        attribute = [start for start in attribute_starts(body)
                     if not _states_another_finding(body, start, source)]
    normal = contradicted_by(body, target) if target is not None else []
    return _Removed(of_source, denial, normal, attribute)


def _states_another_finding(body: str, position: int, source: str | None) -> bool:
    """Whether the clause at `position` asserts a finding other than `source`: an attribute
    the plan drops ("increased interstitial markings") may be how another diagnosis shows, and
    that diagnosis stays."""
    stop = body[-1] if body[-1] in ".!?" else ""
    core = body[:-1] if stop else body
    clause = next((c for c in _clauses(core)[0] if c.start <= position < c.end), None)
    if clause is None:
        return False
    return any(m.label != source and m.status == LABEL_POSITIVE
               for m in find_mentions(core[clause.start:clause.end]))


# ---------------------------------------------------------------------------------------------
# Clauses

@dataclass(frozen=True)
class _Clause:
    start: int
    end: int


def _clauses(body: str) -> tuple[list[_Clause], list[str]]:
    """The clauses of a sentence body (its final punctuation excluded) and the separators
    between them."""
    clauses, separators, start = [], [], 0
    for match in _CLAUSE_BREAK.finditer(body):
        if match.start() == start:
            continue
        clauses.append(_Clause(start, match.start()))
        separators.append(match.group())
        start = match.end()
    clauses.append(_Clause(start, len(body)))
    return clauses, separators


def _owners(body: str, clauses: list[_Clause]) -> list[int]:
    """For each clause, the clause it belongs to: itself if it names a finding (or a normal
    statement), else the previous clause ("with a meniscus"), or the next when it comes first
    ("Findings are consistent with ...")."""
    named = [bool(find_mentions(body[c.start:c.end]))
             or any(statement.pattern.search(lowered(body[c.start:c.end]))
                    for statement in NORMAL_STATEMENTS)
             for c in clauses]
    owners = []
    for index, has_name in enumerate(named):
        if has_name:
            owners.append(index)
        elif index > 0 and owners:
            owners.append(owners[-1])
        else:
            following = next((j for j in range(index + 1, len(named)) if named[j]), index)
            owners.append(following)
    return owners


def _labels_of(text: str) -> dict[str, float]:
    """The labels `text` mentions, each with the labeller's status (No Finding left out)."""
    return {label: status for label, status in label_report(text).items()
            if status is not None and label != NO_FINDING}


def _rebuilt(
    core: str, clauses: list[_Clause], separators: list[str], keep: list[bool],
    replaced: int | None, replacement: str | None,
) -> str:
    """The sentence from its kept clauses, `replacement` standing in clause `replaced` (after
    that clause's frame: "No ", "There is "). A list is re-punctuated for its new length; a
    first clause that goes leaves its frame to the next ("No A or B" less A is "No B")."""
    indices = [i for i, k in enumerate(keep) if k or i == replaced]
    pieces = []
    for i in indices:
        text = core[clauses[i].start:clauses[i].end]
        if i == replaced:
            frame = _FRAME.match(text)
            text = (frame.group() if frame else "") + replacement
        pieces.append(text)
    if indices[0] != 0:
        frame = _FRAME.match(core[clauses[0].start:clauses[0].end])
        if frame and not _FRAME.match(pieces[0]):
            pieces[0] = frame.group() + pieces[0][0].lower() + pieces[0][1:]
    between = [separators[i - 1] for i in indices[1:]]
    if between and all(_LIST_BREAK.fullmatch(s) for s in separators):
        conjunction = next((w for s in reversed(separators) for w in ("or", "and")
                            if re.search(rf"\b{w}\b", s)), "and")
        between = [", "] * (len(pieces) - 2) + [f" {conjunction} "]
        if len(pieces) > 2:
            between[-1] = f", {conjunction} "
    text = pieces[0] + "".join(s + p for s, p in zip(between, pieces[1:], strict=True))
    return text[0].upper() + text[1:]


@dataclass(frozen=True)
class _Cut:
    """A sentence with clauses cut out: what is left (None: nothing sound is), the words cut,
    and whether the cut left other clauses standing (a clause, not the sentence, went)."""

    remaining: str | None
    removed: str
    partial: bool


def _cut(body: str, starts: Sequence[int], replacement: str | None = None) -> _Cut:
    """`body` less every clause holding one of `starts`, `replacement` (if given) in the place
    of the first of them. Nothing sound is left when every clause goes (and there is no
    replacement) or another finding would read differently without them."""
    stop = body[-1] if body[-1] in ".!?" else ""
    core = body[:-1] if stop else body
    clauses, separators = _clauses(core)
    owners = _owners(core, clauses)
    hit = {owners[i] for i, c in enumerate(clauses) for s in starts if c.start <= s < c.end}
    keep = [owners[i] not in hit for i in range(len(clauses))]
    removed_text = " ".join(core[c.start:c.end] for i, c in enumerate(clauses) if not keep[i])
    partial = any(keep)
    if not partial and replacement is None:
        return _Cut(None, removed_text, False)
    replaced = keep.index(False) if replacement is not None else None
    edited = _rebuilt(core, clauses, separators, keep, replaced, replacement)
    removed = {label for i, c in enumerate(clauses) if not keep[i]
               for label in _labels_of(core[c.start:c.end])}
    kept = _labels_of(" ".join(core[c.start:c.end] for i, c in enumerate(clauses) if keep[i]))
    # The replacement's own status depends on its frame; the caller checks it.
    own = set(_labels_of(replacement)) if replacement else set()
    expected = {label: status for label, status in _labels_of(core).items()
                if (label not in removed or label in kept) and label not in own}
    if {k: v for k, v in _labels_of(edited).items() if k not in own} != expected:
        return _Cut(None, core, False)
    return _Cut(edited + (stop or "."), removed_text, partial)


# ---------------------------------------------------------------------------------------------
# The target's statement

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


def _reading_position(sentences: list[_Sentence], target: str) -> int:
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


@dataclass
class _Slot:
    """Where a removed statement stood in the edited sentence list, and what it said."""

    position: int
    placement: Placement
    whole: bool  # the statement was a sentence of its own, not a clause of one left standing
    removed: str  # the words removed
    sentence: _Sentence | None = None  # the sentence left standing, when a clause went


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
    reading order. Each new statement is shaped like the one it replaces (`_like`)."""
    sentences = _sentences(findings)
    edited: list[_Sentence] = []
    source_slot = target_slot = None
    for s in sentences:
        removed = _removed_starts(s.body, source, target, attribute_starts)
        if not removed.all:
            edited.append(s)
            continue
        cut = _cut(s.body, removed.all)
        said = placement_of(cut.removed)
        if said == Placement():  # "consistent with pneumonia": where is in the clause kept
            said = placement_of(s.body)
        kept = _Sentence(s.marker, cut.remaining) if cut.remaining is not None else None
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
        edited.insert(position, _Sentence(None, text))
    return _renumbered(sentences, edited)


def _renumbered(original: list[_Sentence], edited: list[_Sentence]) -> str:
    """The edited findings as text, numbered 1., 2. ... if the original was a numbered list."""
    if original and all(s.marker for s in original):
        for number, s in enumerate(edited, start=1):
            s.marker = f"{number}."
    return " ".join(_joined(s) for s in edited)


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
    sentences = _sentences(findings)
    edited: list[_Sentence] = []
    slot: _Slot | None = None
    for s in sentences:
        removed = _removed_starts(s.body, source, None, attribute_starts)
        if not removed.all:
            edited.append(s)
            continue
        cut = _cut(s.body, removed.all)
        if cut.remaining is not None:
            edited.append(_Sentence(s.marker, cut.remaining))
        elif removed.source and slot is None:
            slot = _Slot(len(edited), placement_of(cut.removed), True, cut.removed)
    position = slot.position if slot else _reading_position(edited, source)
    said = []
    if slot is not None and rng.random() < EXPLICIT_NEGATIVE_RATE[source] and not (
            rng.random() < LISTED_DENIAL_RATE and _join_negation_list(edited, source, rng)):
        said.append(denial_statement(source, slot.placement, rng))
    lungs = _lungs_normality(edited, source, rng)
    if (source == "Fracture" and rng.random() < NO_OSSEOUS_ABNORMALITY_RATE
            and not _OSSEOUS.search(lowered(" ".join(_joined(s) for s in edited)))):
        edited.append(_Sentence(None, sentence(NO_OSSEOUS_ABNORMALITY)))
    if not edited and not said:  # a report says something: here, that the finding is gone
        said.append(denial_statement(source, slot.placement if slot else Placement(), rng,
                                     slot.removed if slot else None))
    for statement in reversed(said):
        if not _contradicts_what_stays(edited, statement):
            edited.insert(position, _Sentence(None, statement))
    if lungs is not None and not _contradicts_what_stays(edited, lungs):
        # Where reports say it: first after the devices.
        edited.insert(_after_devices(edited), _Sentence(None, lungs))
    return _renumbered(sentences, edited)


def _after_devices(edited: list[_Sentence]) -> int:
    """The index after the sentences about devices the findings open with."""
    for index, s in enumerate(edited):
        if "Support Devices" not in _labels_of(s.body):
            return index
    return len(edited)


# How often a deletion's denial joins a negation list the report already has ("No pneumothorax."
# -> "No pneumothorax or pleural effusion.") rather than standing alone: the reports list two or
# three absent findings together about this often, and an insertion takes its target out of
# such lists as often.
LISTED_DENIAL_RATE = 0.6
_LISTED = re.compile(r"^(?P<frame>no evidence of|there is no|no) (?P<items>[^.;]+)\.$",
                     re.IGNORECASE)


def _join_negation_list(edited: list[_Sentence], label: str, rng: np.random.Generator) -> bool:
    """Add `label`'s negated phrase to a negation list of `edited` with fewer than three items
    (the reports' longest), in place; False if there is none or it would not read back."""
    negated = PHRASINGS[label].negated
    lists = []
    for index, s in enumerate(edited):
        match = _LISTED.match(s.body)
        if match is None:
            continue
        items = [item for item in re.split(r",\s*(?:or\s+)?|\s+or\s+", match["items"]) if item]
        labels = _labels_of(s.body)
        if len(items) < 3 and labels and all(v == LABEL_NEGATIVE for v in labels.values()):
            lists.append((index, match["frame"], items))
    if not negated or not lists:
        return False
    index, frame, items = lists[int(rng.integers(len(lists)))]
    body = f"{frame} {listed([*items, pick(rng, negated)])}."
    if _labels_of(body).get(label) != LABEL_NEGATIVE:
        return False
    edited[index] = _Sentence(edited[index].marker, body)
    return True


def _lungs_normality(
    edited: list[_Sentence], removed: str, rng: np.random.Generator
) -> str | None:
    """What the lungs are said to be once the lung finding `removed` has gone from `edited`
    (None: nothing): "The lungs are clear." when no lung finding is left, "The lungs are well
    expanded." at `LUNGS_WELL_EXPANDED_RATE` when the atelectasis went but another lung
    finding stays, each at the rate reports say it; never where the lungs are already
    described."""
    text = lowered(" ".join(_joined(s) for s in edited))
    if removed not in LUNG_FINDINGS or any(
            statement.pattern.search(text) for statement in NORMAL_STATEMENTS
            if statement.phrase.startswith("the lungs")):
        return None
    if not any(_labels_of(text).get(d) in (LABEL_POSITIVE, LABEL_UNCERTAIN)
               for d in LUNG_FINDINGS):
        return sentence(LUNGS_CLEAR) if rng.random() < LUNGS_CLEAR_RATE else None
    if removed == "Atelectasis" and rng.random() < LUNGS_WELL_EXPANDED_RATE:
        return sentence(LUNGS_WELL_EXPANDED)
    return None


def _fill(
    edited: list[_Sentence], source: str | None, target: str, source_slot: _Slot | None,
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


def _attach_to_partner(edited: list[_Sentence], target: str, rng: np.random.Generator) -> bool:
    """State `target` as a clause of its pair partner's statement (`PAIRED_CLAUSES`: "Small
    left pleural effusion." -> "Small left pleural effusion with adjacent atelectasis."), the
    way reports state the two together; False if no sentence states the partner alone."""
    if target not in PAIRED_CLAUSES:
        return False
    partner, clauses = PAIRED_CLAUSES[target]
    for index, s in enumerate(edited):
        if _labels_of(s.body) != {partner: LABEL_POSITIVE} or " with " in s.body:
            continue
        body = f"{s.body.rstrip('.')} {pick(rng, clauses)}."
        if _labels_of(body) == {partner: LABEL_POSITIVE, target: LABEL_POSITIVE}:
            edited[index] = _Sentence(s.marker, body)
            return True
    return False


def _contradicts_what_stays(edited: list[_Sentence], denial: str) -> bool:
    return bool(contradictions(" ".join([*(_joined(s) for s in edited), denial])))


def _swap_into_list(
    edited: list[_Sentence], slot: _Slot, source: str, target: str, rng: np.random.Generator
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
    cut = _cut(original.body, starts, replacement=pick(rng, negated))
    if cut.remaining is None or _labels_of(cut.remaining).get(source) != LABEL_NEGATIVE:
        return False
    swapped = [*edited]
    swapped[slot.position - 1] = _Sentence(original.marker, cut.remaining)
    if contradictions(" ".join(_joined(s) for s in swapped)):
        return False
    edited[slot.position - 1] = swapped[slot.position - 1]
    return True


def _replace_source_clause(
    edited: list[_Sentence], index: int, slot: _Slot, source: str, target: str, phrase: str
) -> bool:
    """Put `phrase` where the source's clause was in its sentence (`slot.sentence`, the
    original, now `edited[index]` without the clause); False if it does not read back right."""
    original = slot.sentence
    starts = [m.start for m in find_mentions(original.body)
              if m.label == source and m.status in (LABEL_POSITIVE, LABEL_UNCERTAIN)]
    cut = _cut(original.body, starts, replacement=phrase)
    if cut.remaining is None or _labels_of(cut.remaining).get(target) != LABEL_POSITIVE:
        return False
    edited[index] = _Sentence(original.marker, cut.remaining)
    return True

"""A findings text as sentences and clauses: where a statement stands, and cutting it out.

The editor (`editing`) edits a report clause by clause, keeping every other word: the
statements a rewrite removes from a sentence are found by `removed_starts` and cut out by
`cut_clauses`. A clause is a part of a sentence between commas, "and", "or", "with", "versus",
"consistent with" or semicolons; clauses that name no finding ("with a meniscus", "findings
are") go with the finding they qualify. A list keeps its frame and its conjunction: "No pleural
effusion, pneumothorax, or consolidation." less the pneumothorax is "No pleural effusion or
consolidation.". A cut after which the sentence's other findings would read differently leaves
nothing (`Cut.remaining` is None), and the caller removes the sentence whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cpo_pipeline.radiology.chexpert import (
    HIERARCHY,
    LABEL_NEGATIVE,
    LABEL_POSITIVE,
    LABEL_UNCERTAIN,
    NO_FINDING,
)
from cpo_pipeline.radiology.labeller import find_mentions, label_report
from cpo_pipeline.radiology.normal_statements import NORMAL_STATEMENTS, contradicted_by, lowered

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


@dataclass
class Sentence:
    """One sentence of the findings: its list marker ("2.") if numbered, and its words."""

    marker: str | None
    body: str


def split_sentences(text: str) -> list[str]:
    """Sentences of a findings text; a numbered item's marker ("2.") stays with its sentence."""
    return [sentence_text(s) for s in parse_sentences(text)]


def sentence_text(s: Sentence) -> str:
    """The sentence as the findings write it, its marker (if any) first."""
    return f"{s.marker} {s.body}" if s.marker else s.body


def parse_sentences(text: str) -> list[Sentence]:
    """The sentences of a findings text, each marker apart from its words so that an edit
    can renumber the list (`renumbered`)."""
    text = " ".join(text.split())
    found: list[Sentence] = []
    start, marker = 0, None
    for end, following in [*((m.start(), m.end()) for m in _SENTENCE_END.finditer(text)),
                           (len(text), len(text))]:
        piece = text[start:end]
        if _LIST_MARKER.fullmatch(piece):
            marker = piece
        elif piece:
            found.append(Sentence(marker, piece))
            marker = None
        start = following
    return found


def renumbered(original: list[Sentence], edited: list[Sentence]) -> str:
    """The edited findings as text, numbered 1., 2. ... if the original was a numbered list."""
    if original and all(s.marker for s in original):
        for number, s in enumerate(edited, start=1):
            s.marker = f"{number}."
    return " ".join(sentence_text(s) for s in edited)


# ---------------------------------------------------------------------------------------------
# What to remove

AttributeStarts = Callable[[str], list[int]]


@dataclass(frozen=True)
class Removed:
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


def removed_starts(
    body: str, source: str | None, target: str | None, attribute_starts: AttributeStarts | None
) -> Removed:
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
    return Removed(of_source, denial, normal, attribute)


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


def labels_of(text: str) -> dict[str, float]:
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
class Cut:
    """A sentence with clauses cut out: what is left (None: nothing sound is), the words cut,
    and whether the cut left other clauses standing (a clause, not the sentence, went)."""

    remaining: str | None
    removed: str
    partial: bool


def cut_clauses(body: str, starts: Sequence[int], replacement: str | None = None) -> Cut:
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
        return Cut(None, removed_text, False)
    replaced = keep.index(False) if replacement is not None else None
    edited = _rebuilt(core, clauses, separators, keep, replaced, replacement)
    removed = {label for i, c in enumerate(clauses) if not keep[i]
               for label in labels_of(core[c.start:c.end])}
    kept = labels_of(" ".join(core[c.start:c.end] for i, c in enumerate(clauses) if keep[i]))
    # The replacement's own status depends on its frame; the caller checks it.
    own = set(labels_of(replacement)) if replacement else set()
    expected = {label: status for label, status in labels_of(core).items()
                if (label not in removed or label in kept) and label not in own}
    if {k: v for k, v in labels_of(edited).items() if k not in own} != expected:
        return Cut(None, core, False)
    return Cut(edited + (stop or "."), removed_text, partial)

"""Rule-based CheXpert-style labelling of report text: find mentions, then negation and uncertainty.

One implementation serves the demo generator's tests, concept extraction, the counterfactual
verifier and evaluation. It follows the CheXpert labeller's rule order (mention, pre-negation
uncertainty, negation, post-negation uncertainty, aggregation) with regular expressions and clause
scopes in place of a dependency parse. The scope rules work for any phrase table: compile one with
`compile_phrases` and read its mentions with `classify_mentions` (the concept graph does so for
radiographic attributes and anatomical locations).

Choices where the rules leave room:
- "The lungs are clear" and "the lungs are well expanded" mention no observation, so they neither
  negate nor assert any lung finding; a text with nothing present still gets "No Finding".
- Anatomical descriptors ("heart size", "cardiac silhouette", "mediastinal contours") are mentions
  of Cardiomegaly / Enlarged Cardiomediastinum: positive on their own ("heart size is enlarged"),
  negative when called normal, uncertain when called stable or unchanged.
"""

from __future__ import annotations

import re
import string
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from cpo_pipeline.radiology.chexpert import (
    CHEXPERT_LABELS,
    DISEASES,
    LABEL_NEGATIVE,
    LABEL_POSITIVE,
    LABEL_UNCERTAIN,
)


@dataclass(frozen=True)
class ObservationPhrases:
    """How one CheXpert observation is mentioned in report text.

    Entries are lowercase regular-expression fragments matched on word boundaries, in which a
    space stands for any run of whitespace (report lines wrap mid-phrase). `descriptors`
    name an anatomical structure rather than a finding; only they are negated by "normal" and made
    uncertain by "stable". An `exceptions` match cancels every mention it overlaps.
    """

    findings: tuple[str, ...]
    descriptors: tuple[str, ...] = ()
    exceptions: tuple[str, ...] = ()


MENTION_PHRASES: dict[str, ObservationPhrases] = {
    "Atelectasis": ObservationPhrases(
        findings=(r"atelecta\w*", r"collaps(?:e|ed|ing)"),
        exceptions=(r"(?:vertebral|vertebral body|compression) collapse",),
    ),
    "Cardiomegaly": ObservationPhrases(
        findings=(
            r"cardiomegaly",
            r"cardiac enlargement",
            r"enlarged (?:heart|cardiac silhouette)",
            r"enlargement of the (?:heart|cardiac silhouette)",
        ),
        descriptors=(
            r"heart sizes?",
            r"size of the heart",
            r"cardiac (?:size|silhouette|contours?|shadow)",
            # "the heart" only as a subject: "overlying the heart" is not about its size.
            r"heart(?= (?:is|appears|remains|seems)\b)",
        ),
    ),
    "Consolidation": ObservationPhrases(findings=(r"consolidat\w*",)),
    "Edema": ObservationPhrases(
        findings=(
            r"edema(?:tous)?",
            r"(?:congestive )?heart failure",
            r"chf",
            r"(?:pulmonary )?(?:vascular|venous) congestion",
            r"pulmonary congestion",
            r"vascular engorgement",
            r"cephalization",
            r"kerley(?: b)? lines",
        ),
        exceptions=(r"(?:soft tissue|subcutaneous|chest wall) edema",),
    ),
    "Enlarged Cardiomediastinum": ObservationPhrases(
        findings=(
            r"(?:enlarged|widened) (?:(?:cardio)?mediastinum|(?:cardio)?mediastinal contours?"
            + r"|(?:cardio)?mediastinal silhouette)",
            r"(?:cardio)?mediastinal (?:widening|enlargement)",
            r"(?:widening|enlargement) of the (?:cardio)?mediastin\w*(?: silhouette)?",
        ),
        descriptors=(
            r"cardiomediastin\w*(?: (?:silhouette|contours?|borders?|structures))?",
            r"mediastinal (?:silhouette|contours?|width)",
            r"mediastinum(?= (?:is|appears|remains|seems)\b)",
        ),
    ),
    "Fracture": ObservationPhrases(findings=(r"fractur(?:e|es|ed)",)),
    "Lung Lesion": ObservationPhrases(
        findings=(
            r"mass(?:es)?",
            r"nodules?",
            r"nodular (?:opacit(?:y|ies)|densit(?:y|ies)|lesions?)",
            r"(?:lung|pulmonary|cavitary|spiculated) lesions?",
            r"tumou?rs?",
            r"neoplasms?",
            r"carcinoma",
            r"malignanc(?:y|ies)",
            r"metasta\w+",
        ),
        exceptions=(r"mass effect",),
    ),
    "Lung Opacity": ObservationPhrases(
        findings=(
            r"opaci\w*",
            r"infiltrat\w*",
            r"air(?:-| )?space (?:disease|process|opaci\w*)",
            r"increased densit(?:y|ies)",
            r"interstitial (?:markings?|opaci\w*|abnormalit\w*|pattern|prominence)",
            r"reticula\w*",
            r"haziness",
            r"scar(?:s|ring)?",
        ),
        exceptions=(r"pleural scar\w*",),
    ),
    "Pleural Effusion": ObservationPhrases(
        findings=(r"effusions?", r"pleural fluid", r"hydropneumothora(?:x|ces)"),
        exceptions=(r"pericardial effusions?", r"(?:joint|knee|shoulder) effusions?"),
    ),
    "Pleural Other": ObservationPhrases(
        findings=(
            r"pleural (?:thickening|plaques?|scar\w*|calcifications?)",
            r"fibrothorax",
        ),
    ),
    "Pneumonia": ObservationPhrases(
        findings=(r"(?:broncho)?pneumonias?", r"infecti(?:on|ons|ous)(?: process)?"),
    ),
    "Pneumothorax": ObservationPhrases(findings=(r"(?:hydro)?pneumothora(?:x|ces)",)),
    "Support Devices": ObservationPhrases(
        findings=(
            r"tubes?",
            r"lines?",
            r"catheters?",
            r"picc",
            r"pacemakers?",
            r"pacers?",
            r"a?icds?",
            r"defibrillators?",
            r"port-?a-?cath",
            r"mediport",
            r"ports?",
            r"drains?",
            r"stents?",
            r"cannulas?",
            r"hardware",
            r"devices?",
            r"(?:prosthetic|mechanical|bioprosthetic) (?:aortic |mitral )?valves?",
            r"valve replacements?",
            r"swan-ganz",
            r"intra-aortic balloon pump",
        ),
        exceptions=(
            r"(?:pleural|kerley|kerley b|septal|skin|skin fold|fissure|junction"
            + r"|azygoesophageal|paraspinal|paratracheal) lines?",
            r"lines? of kerley",
            r"in line with",
        ),
    ),
}


@dataclass(frozen=True)
class Mention:
    """One mention of an observation in a text, with the status its context gives it."""

    label: str
    phrase: str
    start: int
    end: int
    status: float


Governs = Literal["following", "preceding", "both"]


@dataclass(frozen=True)
class Cue:
    """A phrase that sets the status of the mentions in its scope.

    `governs` is "following" (the mentions after it in its clause: "no X, Y or Z"), "preceding"
    (the subjects it is said of: "X and Y are absent", "heart size is normal") or "both"
    ("X versus Y"). A preceding cue reaches back over a list of mentions and a linking verb
    ("is", "has been", "appears to have"), never over another verb or cue.
    """

    phrase: str
    governs: Governs
    descriptors_only: bool = False


_HEDGE = r"(?:entirely |completely |totally |definitely |definitively )?"

PRE_NEGATION_UNCERTAINTY: tuple[Cue, ...] = (
    Cue(rf"(?:cannot|can not|can't|could not|difficult to|unable to) {_HEDGE}(?:exclude|rule out)",
        "following"),
    Cue(rf"(?:cannot|can not|can't|could not|may not|not) (?:be )?{_HEDGE}(?:excluded|ruled out)",
        "preceding"),
    Cue(r"borderline|top(?:-| )normal|(?:upper|high)(?:-| )normal"
        r"|(?:at the )?(?:upper|high) limits? of normal", "both"),
)

NEGATION: tuple[Cue, ...] = (
    # "no change in the effusion" and "no increase in ..." assert the finding.
    Cue(r"no(?! longer)(?! (?:(?:significant|interval|appreciable|substantial|major|further"
        r"|definite|other) )?(?:change|increase|worsening|progression|difference|growth))"
        r"|without|negative for|free of|clear of|absence of|resolution of|removal of|neither",
        "following"),
    Cue(r"(?:no longer|not) (?:(?:definitely|convincingly|currently) )?(?:seen|visualized|visible"
        r"|present|evident|identified|appreciated|demonstrated|detected)"
        r"|absent|resolved|cleared|removed|withdrawn", "preceding"),
    Cue(r"normal(?:-sized| sized)?|unremarkable|within normal limits|not enlarged", "both",
        descriptors_only=True),
)

POST_NEGATION_UNCERTAINTY: tuple[Cue, ...] = (
    Cue(r"possibl[ey]|probabl[ey]|likely|may|might|could|perhaps|presum\w+|suspect\w*"
        r"|suspicio(?:us|n) (?:for|of)|(?<!to\s)suggest(?:s|ed|ing|ive of)?"
        r"|concern(?:ing)? for|worrisome for|question(?:able|ed)?(?: of)?|equivocal"
        r"|differential(?: diagnosis)?(?: (?:includes?|of))?|consider(?:ed)?"
        r"|rule out|r/o|(?:evaluate|evaluation|assess|assessment) (?:for|of)", "following"),
    Cue(r"versus|vs\.?", "both"),
    # Only clause-final: in "the opacity is likely atelectasis" the hedge is about atelectasis.
    Cue(r"(?:is|are) (?:possible|likely|probable|suspected|questioned|favored|considered)"
        r"(?=\s*(?:[.,;:]|$))", "preceding"),
    # CheXpert reads "stable heart size" as uncertain cardiomegaly: stable, but at what size?
    Cue(r"(?:stable|unchanged|similar)(?! (?:\w+ )?(?:enlarge|widen))"
        r"|no (?:significant |interval )?change in|not (?:significantly )?changed", "both",
        descriptors_only=True),
)

# The first group with a cue governing a mention decides its status; none leaves it positive.
RULE_ORDER: tuple[tuple[float, tuple[Cue, ...]], ...] = (
    (LABEL_UNCERTAIN, PRE_NEGATION_UNCERTAINTY),
    (LABEL_NEGATIVE, NEGATION),
    (LABEL_UNCERTAIN, POST_NEGATION_UNCERTAINTY),
)

# Where every scope ends: sentence punctuation ("vs." and decimals excepted), blank lines, and
# words that open a new clause.
_CLAUSE_BREAK = (
    r"(?<!\bvs)[.!?;:](?=\s|$)|\n\s*\n|\b(?:but|however|although|though|whereas|while|which"
    r"|except|other than|aside from|apart from|besides|with|after|following|since|status post"
    r"|s/p|despite|given)\b"
)
# Where a following scope ends inside its clause: a verb ("no effusion is seen, ..."), a new
# coordinated subject ("no effusion and the heart is enlarged") or a graded finding after a comma
# ("no pneumothorax, small left effusion").
_SCOPE_END = (
    r"\b(?:is|are|was|were|has|have|had|seen|noted|identified|present|appears?|remains?"
    r"|persists?|demonstrated|visualized|shows?|measur\w*|extends?|terminates?|projects?"
    r"|courses?)\b|(?:,|\band\b|\bor\b) (?:the|a|an|there|it|this|these|that)\b"
    r"|, (?:trace|tiny|minimal|small|mild|moderate|large|severe|massive)\b"
)
_LINKING_VERB_AT_END = (
    r"\b(?:is|are|was|were|has|have|appears?|remains?|seems?)"
    r"(?: (?:been|now|again|still|also|otherwise|grossly|overall|essentially|to be|to have))*\s*$"
)
_GAP_VERB = r"\b(?:is|are|was|were|has|have|had|seen|noted|appears?|remains?|shows?)\b"
_COORDINATOR = r"\b(?:and|or|nor)\b"

# Patterns are ASCII and run on ASCII-lowercased text, which keeps every offset of the original.
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _compile(fragment: str) -> re.Pattern[str]:
    return re.compile(fragment.replace(" ", r"\s+"))


def _alternation(fragments: tuple[str, ...]) -> str:
    # Longer alternatives first, so that at one position the longest phrase wins.
    return "|".join(sorted(fragments, key=len, reverse=True))


@dataclass(frozen=True)
class _CompiledObservation:
    label: str
    mentions: re.Pattern[str]
    exceptions: re.Pattern[str] | None


@dataclass(frozen=True)
class PhraseTable:
    """The compiled mention patterns of a set of labels, ready for `classify_mentions`."""

    observations: tuple[_CompiledObservation, ...]


def _compile_observation(label: str, phrases: ObservationPhrases) -> _CompiledObservation:
    alternatives = [rf"(?P<finding>{_alternation(phrases.findings)})"]
    if phrases.descriptors:
        alternatives.append(rf"(?P<descriptor>{_alternation(phrases.descriptors)})")
    mentions = _compile(rf"\b(?:{'|'.join(alternatives)})\b")
    exceptions = (
        _compile(rf"\b(?:{_alternation(phrases.exceptions)})\b") if phrases.exceptions else None
    )
    return _CompiledObservation(label, mentions, exceptions)


@dataclass(frozen=True)
class _CompiledCue:
    pattern: re.Pattern[str]
    governs: Governs
    descriptors_only: bool


def compile_phrases(phrases: Mapping[str, ObservationPhrases]) -> PhraseTable:
    """Compile a label -> phrases table, once per table rather than once per text."""
    return PhraseTable(tuple(
        _compile_observation(label, label_phrases) for label, label_phrases in phrases.items()
    ))


CHEXPERT_PHRASES = compile_phrases(MENTION_PHRASES)
_RULES = tuple(
    (status, tuple(
        _CompiledCue(_compile(rf"\b(?:{cue.phrase})(?!\w)"), cue.governs, cue.descriptors_only)
        for cue in cues
    ))
    for status, cues in RULE_ORDER
)
_CLAUSE_BREAK_RE = _compile(_CLAUSE_BREAK)
_SCOPE_END_RE = _compile(_SCOPE_END)
_LINKING_VERB_AT_END_RE = _compile(_LINKING_VERB_AT_END)
_GAP_VERB_RE = _compile(_GAP_VERB)
_COORDINATOR_RE = _compile(_COORDINATOR)


@dataclass(frozen=True)
class _RawMention:
    label: str
    start: int
    end: int
    is_descriptor: bool


def _raw_mentions(text: str, table: PhraseTable) -> list[_RawMention]:
    found = []
    for observation in table.observations:
        matches = list(observation.mentions.finditer(text))
        if matches and observation.exceptions is not None:
            excluded = [m.span() for m in observation.exceptions.finditer(text)]
            matches = [
                m for m in matches
                if not any(start < m.end() and m.start() < end for start, end in excluded)
            ]
        found.extend(
            _RawMention(observation.label, m.start(), m.end(), m.lastgroup == "descriptor")
            for m in matches
        )
    found.sort(key=lambda mention: (mention.start, mention.end))
    return found


class _Scopes:
    """The clauses, cues and scope ends of one text, found once and shared by all its mentions."""

    def __init__(self, text: str, mentions: list[_RawMention]) -> None:
        self.text = text
        self.mentions = mentions
        breaks = [m.span() for m in _CLAUSE_BREAK_RE.finditer(text)]
        self.break_starts = [start for start, _ in breaks]
        self.break_ends = [end for _, end in breaks]
        self.cue_spans = [
            [[m.span() for m in cue.pattern.finditer(text)] for cue in cues] for _, cues in _RULES
        ]
        self.cue_starts = sorted(
            start for per_rule in self.cue_spans for spans in per_rule for start, _ in spans
        )
        self.scope_ends = sorted(
            [m.start() for m in _SCOPE_END_RE.finditer(text)] + self.cue_starts
        )

    def status(self, mention: _RawMention) -> float:
        clause_start, clause_end = self._clause(mention.start)
        for (status, cues), spans_per_cue in zip(_RULES, self.cue_spans, strict=True):
            for cue, spans in zip(cues, spans_per_cue, strict=True):
                if cue.descriptors_only and not mention.is_descriptor:
                    continue
                if any(
                    clause_start <= start < clause_end
                    and self._governs(cue.governs, start, end, mention, clause_end)
                    for start, end in spans
                ):
                    return status
        return LABEL_POSITIVE

    def _clause(self, position: int) -> tuple[int, int]:
        index = bisect_right(self.break_starts, position)
        start = self.break_ends[index - 1] if index else 0
        end = self.break_starts[index] if index < len(self.break_starts) else len(self.text)
        return start, end

    def _governs(
        self,
        governs: Governs,
        cue_start: int,
        cue_end: int,
        mention: _RawMention,
        clause_end: int,
    ) -> bool:
        if governs != "preceding" and cue_end <= mention.start:
            next_end = bisect_left(self.scope_ends, cue_end)
            scope_end = clause_end
            if next_end < len(self.scope_ends):
                scope_end = min(scope_end, self.scope_ends[next_end])
            if mention.start < scope_end:
                return True
        if governs != "following" and mention.end <= cue_start:
            return self._is_subject_of(mention, cue_start)
        return False

    def _is_subject_of(self, mention: _RawMention, cue_start: int) -> bool:
        """Whether only other mentions, "and"/"or" and a linking verb stand before the cue."""
        next_cue = bisect_left(self.cue_starts, mention.end)
        if next_cue < len(self.cue_starts) and self.cue_starts[next_cue] < cue_start:
            return False
        pieces, position = [], mention.end
        for other in self.mentions:
            if other.start >= cue_start:
                break
            if other.start >= position:
                pieces.append(self.text[position:other.start])
                position = max(position, other.end)
        pieces.append(self.text[position:cue_start])
        gap = _LINKING_VERB_AT_END_RE.sub("", " ".join(pieces))
        if _GAP_VERB_RE.search(gap):
            return False
        return "," not in gap or _COORDINATOR_RE.search(gap) is not None


def classify_mentions(text: str, table: PhraseTable) -> list[Mention]:
    """Every mention of a label of `table` in `text`, in reading order, with the status the
    negation and uncertainty rules give it.

    Scopes are worked out from this table's mentions only: a preceding cue reaches back over a
    list of them ("X, Y and Z are absent"), but over other words only while no verb, and no
    comma outside a coordinated list, stands between.
    """
    lowered = text.translate(_ASCII_LOWER)
    raw = _raw_mentions(lowered, table)
    if not raw:
        return []
    scopes = _Scopes(lowered, raw)
    return [Mention(m.label, text[m.start:m.end], m.start, m.end, scopes.status(m)) for m in raw]


def find_mentions(text: str) -> list[Mention]:
    """Every mention of a CheXpert observation in `text`, in reading order, with its status."""
    return classify_mentions(text, CHEXPERT_PHRASES)


_PRECEDENCE = {LABEL_POSITIVE: 3, LABEL_UNCERTAIN: 2, LABEL_NEGATIVE: 1}


def no_finding(labels: dict[str, float | None]) -> float | None:
    """CheXpert's "No Finding": 1.0 when no label but Support Devices is positive or uncertain.

    Otherwise None, never 0.0: the official labeller leaves it blank.
    """
    present = (LABEL_POSITIVE, LABEL_UNCERTAIN)
    if any(labels[label] in present for label in DISEASES):
        return None
    return LABEL_POSITIVE


def label_report(text: str) -> dict[str, float | None]:
    """The 14 CheXpert labels of one report section (1.0, 0.0, -1.0, or None if not mentioned).

    Per label: positive beats uncertain beats negative. Empty text gets no labels at all, not
    even "No Finding".
    """
    labels: dict[str, float | None] = dict.fromkeys(CHEXPERT_LABELS)
    if not text.strip():
        return labels
    for mention in find_mentions(text):
        current = labels[mention.label]
        if current is None or _PRECEDENCE[mention.status] > _PRECEDENCE[current]:
            labels[mention.label] = mention.status
    labels["No Finding"] = no_finding(labels)
    return labels

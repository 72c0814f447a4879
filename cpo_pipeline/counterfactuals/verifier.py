"""Checking a counterfactual before it is accepted.

A candidate passes when, in order: the answer parses; the rule-based labeller finds the target
disease asserted (positive) in the counterfactual findings; the source disease is no longer
asserted; the diagnosis line names the target and not the source; the findings do not
contradict themselves (`contradictions`: a concept asserted and negated, a disease under a
negated parent, "The lungs are clear." beside a lung finding); and the edit from the factual
findings is small: at most max(`min_edit_tokens`, `max_edit_fraction` × factual tokens) tokens
changed (difflib opcodes; a replaced span counts its longer side).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from cpo_pipeline.counterfactuals.contradictions import contradictions
from cpo_pipeline.radiology.answer_format import (
    TrajectoryFormatError,
    parse_trajectory,
    positive_diseases,
)
from cpo_pipeline.radiology.chexpert import LABEL_POSITIVE, NO_FINDING
from cpo_pipeline.radiology.labeller import label_report

_TOKEN = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class VerifierConfig:
    # One deleted sentence, one or two negations and one added sentence of findings come to
    # about 30 tokens: the floor admits the paper's "one or two findings" edits.
    min_edit_tokens: int = 32
    max_edit_fraction: float = 0.6


@dataclass(frozen=True)
class Edit:
    """One contiguous change: `op` is insert, delete or replace; texts are token runs."""

    op: str
    before: str
    after: str


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str
    edits: tuple[Edit, ...] = ()
    edit_tokens: int = 0


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def token_edits(before: str, after: str) -> tuple[tuple[Edit, ...], int]:
    """The token-level edits turning `before` into `after`, and their size in tokens."""
    a, b = tokens(before), tokens(after)
    edits, size = [], 0
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        edits.append(Edit(op, " ".join(a[i1:i2]), " ".join(b[j1:j2])))
        size += max(i2 - i1, j2 - j1)
    return tuple(edits), size


def verify_counterfactual(
    factual_findings: str,
    candidate: str,
    source: str,
    target: str,
    config: VerifierConfig = VerifierConfig(),
) -> Verdict:
    """Accept or reject one counterfactual answer (see module docstring for the rules)."""
    try:
        parsed = parse_trajectory(candidate)
    except TrajectoryFormatError as error:
        return Verdict(False, f"format: {error}")
    labels = label_report(parsed.findings)
    edits, size = token_edits(factual_findings, parsed.findings)
    if labels.get(target) != LABEL_POSITIVE:
        return Verdict(False, f"labeller does not find {target} asserted", edits, size)
    if source != NO_FINDING and labels.get(source) == LABEL_POSITIVE:
        return Verdict(False, f"labeller still finds {source} asserted", edits, size)
    if target not in parsed.diagnoses:
        return Verdict(False, f"diagnosis line does not name {target}", edits, size)
    if source in parsed.diagnoses:
        return Verdict(False, f"diagnosis line still names {source}", edits, size)
    if found := contradictions(parsed.findings):
        return Verdict(False, f"contradicts itself: {'; '.join(found)}", edits, size)
    bound = max(config.min_edit_tokens, int(config.max_edit_fraction * len(tokens(factual_findings))))
    if size > bound:
        return Verdict(False, f"edit too large: {size} tokens changed (bound {bound})", edits, size)
    if not edits:
        return Verdict(False, "no edit: the counterfactual repeats the factual findings")
    return Verdict(True, "accepted", edits, size)


def diagnosis_of(findings: str) -> tuple[str, ...]:
    """What the labeller says a findings text asserts, as the answer line names it."""
    return positive_diseases(label_report(findings))

"""Checking a counterfactual before it is accepted: one verifier for every expert.

A candidate passes when, in order:

1. the answer parses;
2. the rule-based labeller, applied to both findings texts (one labelling), finds the target
   asserted in the counterfactual (a deletion, target "No Finding", asserts nothing new), the
   replaced (source) disease neither asserted nor hedged,
   every other disease the factual findings assert still asserted (unless the concept graph
   says the target excludes it: `may_drop`, and the drop is recorded in the verdict), and no
   disease asserted that the factual findings did not assert besides the target;
3. the answer line names exactly the factual answer less the replaced diagnosis (and recorded
   drops) plus the target (`expected_diagnoses`; "No Finding" when nothing is left);
4. the findings do not contradict themselves (`contradictions`: a concept asserted and negated,
   a disease under a negated parent, "The lungs are clear." beside a lung finding);
5. the edit is small (`VerifierConfig`): at most max(`min_edit_tokens`, `max_edit_fraction` ×
   factual tokens) tokens changed (difflib opcodes; a replaced span counts its longer side),
   and, for a factual of more than `min_edit_tokens` tokens, at least `min_unchanged_share` of
   its tokens kept: rewriting a whole report into another is not a counterfactual of it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from cpo_pipeline.counterfactuals.contradictions import contradictions
from cpo_pipeline.radiology.answer_format import (
    TrajectoryFormatError,
    parse_trajectory,
    positive_diseases,
)
from cpo_pipeline.radiology.chexpert import DISEASES, LABEL_POSITIVE, LABEL_UNCERTAIN, NO_FINDING
from cpo_pipeline.radiology.labeller import label_report

_TOKEN = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class VerifierConfig:
    """The edit bound. Defaults chosen from the distribution measured on 1,000 generated
    patients (benchmarks/README.md, "Edit bound"): the floor admits replacing one statement and
    removing one more; longer reports are held to a share of their length."""

    min_edit_tokens: int = field(default=24, metadata={
        "help": "Verifier: edits up to this many tokens are always small enough."})
    max_edit_fraction: float = field(default=0.5, metadata={
        "help": "Verifier: ... and up to this share of the factual findings' tokens."})
    min_unchanged_share: float = field(default=0.3, metadata={
        "help": "Verifier: a counterfactual of a factual longer than `min_edit_tokens` keeps "
        "at least this share of its tokens in place."})


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
    dropped: tuple[str, ...] = ()


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


def expected_diagnoses(
    factual: Sequence[str], replaced: str | None, target: str, dropped: Collection[str] = ()
) -> tuple[str, ...]:
    """The counterfactual's answer: the factual answer less `replaced` (and `dropped`) plus
    `target`, in CheXpert order. "No Finding" is never kept beside a disease."""
    kept = {d for d in factual if d not in (replaced, NO_FINDING, *dropped)} | {target}
    return tuple(d for d in DISEASES if d in kept) or (NO_FINDING,)


def unchanged_share(before: str, after: str) -> float:
    """Share of `before`'s tokens that `after` keeps in place (difflib's equal runs)."""
    a, b = tokens(before), tokens(after)
    if not a:
        return 1.0
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return sum(block.size for block in matcher.get_matching_blocks()) / len(a)


def _asserted(labels: dict[str, float | None]) -> set[str]:
    return {d for d in DISEASES if labels.get(d) == LABEL_POSITIVE}


def verify_counterfactual(
    factual_findings: str,
    candidate: str,
    source: str,
    target: str,
    config: VerifierConfig = VerifierConfig(),
    *,
    factual_diagnoses: Sequence[str] | None = None,
    replaced: str | None = None,
    may_drop: Collection[str] = (),
) -> Verdict:
    """Accept or reject one counterfactual answer (see module docstring for the rules).

    `source` is the disease the findings give up ("No Finding" for none); `replaced` the
    diagnosis the answer gives up (defaults to `source`); `factual_diagnoses` the factual
    answer line (defaults to what the labeller reads in the factual findings)."""
    try:
        parsed = parse_trajectory(candidate)
    except TrajectoryFormatError as error:
        return Verdict(False, f"format: {error}")
    labels = label_report(parsed.findings)
    factual_labels = label_report(factual_findings)
    edits, size = token_edits(factual_findings, parsed.findings)

    def rejected(reason: str) -> Verdict:
        return Verdict(False, reason, edits, size)

    if target != NO_FINDING and labels.get(target) != LABEL_POSITIVE:
        return rejected(f"labeller does not find {target} asserted")
    if source != NO_FINDING and labels.get(source) == LABEL_POSITIVE:
        return rejected(f"labeller still finds {source} asserted")
    if source != NO_FINDING and labels.get(source) == LABEL_UNCERTAIN:
        return rejected(f"labeller still finds {source} hedged")
    asserted, before = _asserted(labels), _asserted(factual_labels)
    lost = sorted(before - asserted - {source, target})
    dropped = tuple(d for d in lost if d in may_drop)
    if kept_lost := [d for d in lost if d not in may_drop]:
        return rejected(f"drops {', '.join(kept_lost)}, which the target does not exclude")
    if added := sorted(asserted - before - {target}):
        return rejected(f"asserts {', '.join(added)} besides the target")
    if factual_diagnoses is None:
        factual_diagnoses = positive_diseases(factual_labels)
    expected = expected_diagnoses(factual_diagnoses, replaced or source, target, dropped)
    if set(parsed.diagnoses) != set(expected):
        return rejected(f"diagnosis line names {', '.join(parsed.diagnoses)}, "
                        f"not {', '.join(expected)}")
    if found := contradictions(parsed.findings):
        return rejected(f"contradicts itself: {'; '.join(found)}")
    length = len(tokens(factual_findings))
    bound = max(config.min_edit_tokens, int(config.max_edit_fraction * length))
    if size > bound:
        return rejected(f"edit too large: {size} tokens changed (bound {bound})")
    share = unchanged_share(factual_findings, parsed.findings)
    if length > config.min_edit_tokens and share < config.min_unchanged_share:
        return rejected(f"keeps {share:.0%} of the factual findings "
                        f"(at least {config.min_unchanged_share:.0%})")
    if not edits:
        return Verdict(False, "no edit: the counterfactual repeats the factual findings")
    reason = "accepted" if not dropped else (
        f"accepted; drops {', '.join(dropped)}, which {target} excludes")
    return Verdict(True, reason, edits, size, dropped)

"""The hard-negatives gate's bounds and how a check states them, apart from `quality`'s figures
so that what only describes the gate (the launchpad, the check descriptions) does not load
sklearn and scipy."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class QualityTargets:
    """Issue 9's bounds for hard negatives."""

    max_style_accuracy: float = 0.60
    length_ratio: tuple[float, float] = (0.9, 1.1)
    max_longer_share: float = 0.60
    max_contradictions: int = 0
    min_answer_agreement: float = 1.0
    min_acceptance: float = 0.90
    min_target_share: float = 0.02


@dataclass(frozen=True)
class HardNegativeBounds:
    """The blocking hard-negatives gate's bounds (issue 9's, `QualityTargets`). Style fails
    only when the lower end of a one-sided Wilson interval of its accuracy (`confidence_z`;
    1.645 is 95%) exceeds the bound: on a few hundred pairs the out-of-fold accuracy of
    identical-in-distribution texts wanders +-0.05 around chance, on thousands the lower end
    is within 0.02 of the estimate. z = 0 gates on the estimate itself."""

    max_style_accuracy: float = field(default=QualityTargets.max_style_accuracy, metadata={
        "help": "Hard-negative gate: a classifier on the masked wording may tell the "
        "counterfactual of a pair (in preference pairs: the rejected text) at most this often "
        "(chance is 0.5)."})
    length_ratio: tuple[float, float] = field(default=QualityTargets.length_ratio, metadata={
        "help": "Hard-negative gate: the median counterfactual/factual findings word ratio "
        "lies within these two."})
    max_longer_share: float = field(default=QualityTargets.max_longer_share, metadata={
        "help": "Hard-negative gate: the counterfactual is the longer text in at most this "
        "share of pairs."})
    confidence_z: float = field(default=1.645, metadata={
        "help": "Hard-negative gate: style fails only when the lower end of the one-sided "
        "Wilson interval of the accuracy at this z exceeds `max_style_accuracy` (0: the point "
        "estimate)."})


def gate_description(bounds: HardNegativeBounds, negative: str, positive: str) -> str:
    """What the gate holds a set to, for its check spec: `negative` names the side that must
    not be told apart from `positive` (counterfactual and factual, rejected and chosen)."""
    low, high = bounds.length_ratio
    return (f"with the concept vocabulary masked, a patient-grouped logistic regression tells "
            f"the {negative} side of a pair at most `max_style_accuracy` "
            f"(default {bounds.max_style_accuracy:.2f}) of the time (the lower end of its "
            f"one-sided Wilson interval at `style_confidence_z` (default {bounds.confidence_z}) "
            f"must not exceed it); median {negative}/{positive} findings word ratio within "
            f"`length_ratio` ({low}-{high}); the {negative} the longer text in at most "
            f"`max_longer_share` ({bounds.max_longer_share:.0%}) of pairs (both fixed)")


def bounds_description(bounds: HardNegativeBounds, asset: str, longer: str) -> str:
    """The bounds a run held, and the run config that moves them, for a check result's
    description (the figures come from `HardNegativeVerdict.describe`)."""
    low, high = bounds.length_ratio
    return (f"bounds: the style accuracy's lower bound at most {bounds.max_style_accuracy:.2f} "
            f"at z {bounds.confidence_z} (`max_style_accuracy`, `style_confidence_z`, run config "
            f"of {asset}); median word ratio {low}-{high} and the {longer} the longer text in at "
            f"most {bounds.max_longer_share:.0%} of pairs (fixed: a length cue is what DPO would "
            "learn instead of the diagnosis)")

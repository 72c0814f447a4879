"""How hard a negative each counterfactual is: style, length, contradictions, answer line, targets.

A counterfactual should differ from its study's factual trajectory only in what the image would
have to show. These figures measure how far `counterfactual_trajectories` is from that, and
`check_targets` holds them against issue 9's bounds (`bounds.QualityTargets`); the benchmark
`bench_counterfactual_quality.py` prints both. Only accepted counterfactuals are
compared with their factual; the acceptance rate and the target shares count every
counterfactual row, whatever its verdict.

- Style: can a bag-of-words classifier tell which text of a (counterfactual, factual) pair is
  the counterfactual once the concept vocabulary is masked (`mask_concepts`)? See
  `style_accuracy`; chance is 0.5.
- Length: the counterfactual/factual word-count ratio of the findings, and how often the
  counterfactual is the longer one.
- Contradictions: what `contradictions` finds in a counterfactual's findings.
- Answer line: the counterfactual names exactly the factual's diseases, less the replaced
  `source_diagnosis`, plus the `target_disease` ("No Finding" is not a disease: it is neither
  kept nor removed).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cpo_pipeline.concepts.ontology import Ontology, load_ontology
from cpo_pipeline.counterfactuals.bounds import HardNegativeBounds, QualityTargets
from cpo_pipeline.counterfactuals.contradictions import ContradictionReader, contradictions
from cpo_pipeline.counterfactuals.generation import (
    ACCEPTED,
    COUNTERFACTUAL,
    DELETION,
    FACTUAL,
    edit_kinds,
)
from cpo_pipeline.counterfactuals.masking import (
    FEATURE_TOKEN,
    ConceptMask,
    concept_mask,
    mask_concepts,
)
from cpo_pipeline.radiology.answer_format import TrajectoryFormatError, parse_trajectory
from cpo_pipeline.radiology.chexpert import (
    DISEASES,
    NO_FINDING,
)


def accepted_pairs(trajectories: pd.DataFrame) -> pd.DataFrame:
    """One row per accepted counterfactual, beside its study's factual row: the counterfactual's
    columns as they are, the factual's `text` and `findings` as `factual_text`,
    `factual_findings`. A counterfactual whose study has no factual row is left out."""
    factual = trajectories.loc[trajectories["kind"] == FACTUAL,
                               ["study_id", "text", "findings"]].drop_duplicates("study_id")
    accepted = trajectories[(trajectories["kind"] == COUNTERFACTUAL)
                            & (trajectories["verdict"] == ACCEPTED)]
    return accepted.merge(
        factual.rename(columns={"text": "factual_text", "findings": "factual_findings"}),
        on="study_id", how="inner").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Style

@dataclass(frozen=True)
class StyleFigures:
    """The style gate's result. `accuracy` is None when there are fewer than two patients to
    cross-validate over. `top_features` are the n-grams with the largest absolute weights of a
    model fitted on every pair, signed: positive marks the counterfactual."""

    accuracy: float | None
    pairs: int
    folds: int
    top_features: tuple[tuple[str, float], ...]


def style_accuracy(
    trajectories: pd.DataFrame, mask: ConceptMask, *, folds: int = 5, top: int = 10,
) -> StyleFigures:
    """Out-of-fold accuracy of a logistic regression telling the counterfactual of a pair.

    Each accepted counterfactual and its study's factual, both masked (`mask_concepts`), give
    one example: word uni- and bi-gram counts of the counterfactual minus those of the factual,
    label 1, and the same pair reversed (negated features, label 0), so chance is 0.5. The model
    has no intercept, so a pair and its reverse get opposite scores, and identical masked texts
    score 0 (read as "factual": right for exactly half). Folds are grouped by patient
    (`subject_id`, GroupKFold), so no patient's wording is learned and then tested on.
    """
    # Imported here: the asset modules import this module, and the Dagster code location must
    # load without sklearn and scipy (seconds of import on every code-server start).
    from scipy.sparse import vstack
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    pairs = accepted_pairs(trajectories)
    groups = pairs["subject_id"].to_numpy()
    folds = min(folds, len(np.unique(groups)))
    if folds < 2:
        return StyleFigures(None, len(pairs), folds, ())
    counterfactual = [mask_concepts(text, mask) for text in pairs["text"]]
    factual = [mask_concepts(text, mask) for text in pairs["factual_text"]]
    vectorizer = CountVectorizer(token_pattern=FEATURE_TOKEN, lowercase=False,
                                 ngram_range=(1, 2))
    vectorizer.fit(counterfactual + factual)
    difference = vectorizer.transform(counterfactual) - vectorizer.transform(factual)
    features = vstack([difference, -difference]).tocsr()
    labels = np.concatenate([np.ones(len(pairs), dtype=int), np.zeros(len(pairs), dtype=int)])
    both_groups = np.concatenate([groups, groups])

    def model() -> LogisticRegression:
        return LogisticRegression(C=1.0, fit_intercept=False, max_iter=1000)

    correct = np.zeros(len(labels), dtype=bool)
    for train, test in GroupKFold(n_splits=folds).split(features, labels, both_groups):
        fitted = model().fit(features[train], labels[train])
        correct[test] = fitted.predict(features[test]) == labels[test]
    weights = model().fit(features, labels).coef_[0]
    names = vectorizer.get_feature_names_out()
    strongest = np.argsort(-np.abs(weights), kind="stable")[:top]
    top_features = tuple((str(names[i]), round(float(weights[i]), 4))
                         for i in strongest if weights[i] != 0)
    return StyleFigures(float(correct.mean()), len(pairs), folds, top_features)


# ---------------------------------------------------------------------------------------------
# Length

@dataclass(frozen=True)
class LengthFigures:
    """Findings word counts of accepted pairs; None where there is no pair."""

    pairs: int
    median_ratio: float | None
    longer_share: float | None
    mean_counterfactual_words: float | None
    mean_factual_words: float | None


def length_figures(trajectories: pd.DataFrame) -> LengthFigures:
    """The median counterfactual/factual word-count ratio of the findings texts, and the share
    of pairs whose counterfactual has more words (a tie is not longer)."""
    pairs = accepted_pairs(trajectories)
    if pairs.empty:
        return LengthFigures(0, None, None, None, None)
    counterfactual = pairs["findings"].map(lambda text: len(text.split())).to_numpy(float)
    factual = pairs["factual_findings"].map(lambda text: len(text.split())).to_numpy(float)
    return LengthFigures(
        len(pairs), float(np.median(counterfactual / np.maximum(factual, 1.0))),
        float((counterfactual > factual).mean()), float(counterfactual.mean()),
        float(factual.mean()))


# ---------------------------------------------------------------------------------------------
# Contradictions

@dataclass(frozen=True)
class ContradictionFigures:
    """`count`: accepted counterfactuals with at least one contradiction; `reasons`: how often
    each reason occurs among them; `factual_count`: studies whose factual text the same rule
    flags, the baseline the reports start from; `examples`: up to five (study_id, target,
    reasons)."""

    checked: int
    count: int
    factual_count: int
    reasons: dict[str, int]
    examples: tuple[tuple[int, str, tuple[str, ...]], ...]


def contradiction_figures(
    trajectories: pd.DataFrame, reader: ContradictionReader, *, examples: int = 5
) -> ContradictionFigures:
    """`contradictions` over every accepted counterfactual and over its factual."""
    pairs = accepted_pairs(trajectories)
    found = [contradictions(text, reader) for text in pairs["findings"]]
    factual = {study: contradictions(text, reader) for study, text in
               zip(pairs["study_id"], pairs["factual_findings"], strict=True)}
    reasons = Counter(reason for row in found for reason in row)
    flagged = [(int(study), str(target), row) for study, target, row in
               zip(pairs["study_id"], pairs["target_disease"], found, strict=True) if row]
    return ContradictionFigures(len(pairs), len(flagged), sum(1 for row in factual.values() if row),
                                _by_count(reasons), tuple(flagged[:examples]))


# ---------------------------------------------------------------------------------------------
# Answer line

def answer_diseases(text: str) -> frozenset[str] | None:
    """The diseases a trajectory's answer line names ("No Finding" names none); None when the
    text does not parse."""
    try:
        return frozenset(parse_trajectory(text).diagnoses) - {NO_FINDING}
    except TrajectoryFormatError:
        return None


def expected_answer(factual: frozenset[str], source: str, target: str) -> frozenset[str]:
    """The factual's diseases, less the replaced `source` (nothing for "No Finding"), plus the
    target (nothing for "No Finding": a deletion)."""
    return (factual - {source}) | ({target} - {NO_FINDING})


@dataclass(frozen=True)
class AgreementFigures:
    """Accepted counterfactuals whose answer line is the expected one. Of those that are not:
    how often each disease is named unexpectedly (`extra`) or expected and not named
    (`missing`), and up to five (study_id, expected, named)."""

    checked: int
    agreeing: int
    share: float | None
    extra: dict[str, int]
    missing: dict[str, int]
    examples: tuple[tuple[int, tuple[str, ...], tuple[str, ...]], ...]


def answer_line_agreement(trajectories: pd.DataFrame, *, examples: int = 5) -> AgreementFigures:
    """How many accepted counterfactuals name exactly `expected_answer` of their factual. One
    whose own or whose factual's answer does not parse disagrees."""
    pairs = accepted_pairs(trajectories)
    disagreeing = []
    extra: Counter[str] = Counter()
    missing: Counter[str] = Counter()
    for row in pairs.itertuples():
        named, factual = answer_diseases(row.text), answer_diseases(row.factual_text)
        expected = (None if factual is None
                    else expected_answer(factual, row.source_diagnosis, row.target_disease))
        if named is None or expected is None or named != expected:
            disagreeing.append((int(row.study_id), _ordered(expected), _ordered(named)))
            extra.update((named or frozenset()) - (expected or frozenset()))
            missing.update((expected or frozenset()) - (named or frozenset()))
    agreeing = len(pairs) - len(disagreeing)
    return AgreementFigures(len(pairs), agreeing, agreeing / len(pairs) if len(pairs) else None,
                            _by_count(extra), _by_count(missing), tuple(disagreeing[:examples]))


def _ordered(diseases: frozenset[str] | None) -> tuple[str, ...]:
    return () if diseases is None else tuple(d for d in DISEASES if d in diseases)


def _by_count(counts: Counter[str]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


# ---------------------------------------------------------------------------------------------
# Acceptance and targets

def acceptance_rate(trajectories: pd.DataFrame) -> float | None:
    """Accepted counterfactual rows over every counterfactual row (None when there is none)."""
    counterfactual = trajectories[trajectories["kind"] == COUNTERFACTUAL]
    if counterfactual.empty:
        return None
    return float((counterfactual["verdict"] == ACCEPTED).mean())


def target_shares(trajectories: pd.DataFrame) -> dict[str, float]:
    """Per disease, in CheXpert order and all 12 even at 0, its share of the counterfactual
    rows that aim at a disease (deletions, aimed at "No Finding", are `deletion_share`)."""
    targets = trajectories.loc[trajectories["kind"] == COUNTERFACTUAL, "target_disease"]
    targets = targets[edit_kinds(trajectories) != DELETION]
    counts = targets.value_counts()
    total = len(targets)
    return {disease: float(counts.get(disease, 0)) / total if total else 0.0
            for disease in DISEASES}


def deletion_share(trajectories: pd.DataFrame) -> float | None:
    """The share of counterfactual rows that delete a finding (target "No Finding")."""
    kinds = edit_kinds(trajectories)
    return float((kinds == DELETION).mean()) if len(kinds) else None


# ---------------------------------------------------------------------------------------------
# The whole report

@dataclass(frozen=True)
class QualityReport:
    studies: int
    factual_rows: int
    counterfactual_rows: int
    accepted_rows: int
    acceptance_rate: float | None
    style: StyleFigures
    length: LengthFigures
    contradictions: ContradictionFigures
    answer_line: AgreementFigures
    target_shares: dict[str, float]
    deletion_share: float | None


def quality_report(
    trajectories: pd.DataFrame, ontology: Ontology | None = None, *, folds: int = 5, top: int = 10,
) -> QualityReport:
    """Every figure of this module over one `counterfactual_trajectories` table (`ontology`:
    the concept vocabulary to mask and the attributes to check; the shipped seed by default)."""
    ontology = ontology or load_ontology()
    kind = trajectories["kind"]
    counterfactual = trajectories[kind == COUNTERFACTUAL]
    return QualityReport(
        studies=int(trajectories["study_id"].nunique()),
        factual_rows=int((kind == FACTUAL).sum()),
        counterfactual_rows=len(counterfactual),
        accepted_rows=int((counterfactual["verdict"] == ACCEPTED).sum()),
        acceptance_rate=acceptance_rate(trajectories),
        style=style_accuracy(trajectories, concept_mask(ontology), folds=folds, top=top),
        length=length_figures(trajectories),
        contradictions=contradiction_figures(trajectories, ContradictionReader.of(ontology)),
        answer_line=answer_line_agreement(trajectories),
        target_shares=target_shares(trajectories),
        deletion_share=deletion_share(trajectories),
    )


# ---------------------------------------------------------------------------------------------
# Targets (`bounds.QualityTargets`) and the gate (`bounds.HardNegativeBounds`)

def wilson_lower(share: float, n: int, z: float) -> float:
    """The lower end of the Wilson score interval of a proportion `share` of `n`."""
    if n == 0:
        return 0.0
    centre = share + z * z / (2 * n)
    spread = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


@dataclass(frozen=True)
class HardNegativeVerdict:
    """What the hard-negatives gate found: the reasons it fails (none: it passes), the style
    and length figures, and the lower end of the style accuracy's interval."""

    failures: tuple[str, ...]
    style: StyleFigures
    style_lower_bound: float | None
    length: LengthFigures

    @property
    def passed(self) -> bool:
        return not self.failures

    def describe(self, pairs: str) -> str:
        """One line for the check: why it failed, or what it measured over `pairs`."""
        if self.failures:
            return "; ".join(self.failures)
        if self.style.accuracy is None:
            return (f"style not measured: {self.style.pairs} {pairs} from fewer than two "
                    "patients; length within bounds")
        return (f"style accuracy {self.style.accuracy:.3f} (lower bound "
                f"{self.style_lower_bound:.3f}) over {self.style.pairs} {pairs}; length within "
                "bounds")

    def metadata(self) -> dict[str, object]:
        return {
            "style_accuracy": self.style.accuracy,
            "style_accuracy_lower_bound": self.style_lower_bound,
            "style_pairs": self.style.pairs,
            "style_top_features": {feature: weight for feature, weight in self.style.top_features},
            "length_median_ratio": self.length.median_ratio,
            "counterfactual_longer_share": self.length.longer_share,
        }


def hard_negative_verdict(trajectories: pd.DataFrame, mask: ConceptMask,
                          bounds: HardNegativeBounds | None = None) -> HardNegativeVerdict:
    """The style and length figures of `trajectories`' accepted pairs against `bounds` (the
    defaults when None): the one gate both `counterfactual_trajectories` and `preference_pairs`
    hold."""
    bounds = bounds or HardNegativeBounds()
    style = style_accuracy(trajectories, mask)
    length = length_figures(trajectories)
    low, high = bounds.length_ratio
    failures, lower = [], None
    if style.accuracy is not None:
        lower = wilson_lower(style.accuracy, style.pairs, bounds.confidence_z)
        if lower > bounds.max_style_accuracy:
            failures.append(
                f"style accuracy {style.accuracy:.3f} (lower bound {lower:.3f}) > "
                f"{bounds.max_style_accuracy:.2f}; top n-grams "
                f"{[feature for feature, _ in style.top_features[:3]]}")
    if length.median_ratio is not None and not low <= length.median_ratio <= high:
        failures.append(f"length ratio {length.median_ratio:.2f} outside {low}-{high}")
    if length.longer_share is not None and length.longer_share > bounds.max_longer_share:
        failures.append(f"counterfactual longer in {length.longer_share:.0%} of pairs "
                        f"> {bounds.max_longer_share:.0%}")
    return HardNegativeVerdict(tuple(failures), style, lower, length)


@dataclass(frozen=True)
class TargetCheck:
    figure: str
    value: float | None
    target: str
    met: bool


def check_targets(report: QualityReport, targets: QualityTargets | None = None
                  ) -> tuple[TargetCheck, ...]:
    """Each figure of `report` against its bound (issue 9's when None); a figure that could not
    be measured (None) is not met."""
    targets = targets or QualityTargets()
    low, high = targets.length_ratio

    def check(figure: str, value: float | None, target: str,
              holds: Callable[[float], bool]) -> TargetCheck:
        return TargetCheck(figure, value, target, value is not None and holds(value))

    least_share = min(report.target_shares.values()) if report.counterfactual_rows else None
    return (
        check("style accuracy", report.style.accuracy, f"<= {targets.max_style_accuracy:.2f}",
              lambda value: value <= targets.max_style_accuracy),
        check("length ratio (median)", report.length.median_ratio, f"{low:.1f}-{high:.1f}",
              lambda value: low <= value <= high),
        check("counterfactual longer", report.length.longer_share,
              f"<= {targets.max_longer_share:.0%}", lambda value: value <= targets.max_longer_share),
        check("contradictions", report.contradictions.count, f"<= {targets.max_contradictions}",
              lambda value: value <= targets.max_contradictions),
        check("answer-line agreement", report.answer_line.share,
              f">= {targets.min_answer_agreement:.0%}",
              lambda value: value >= targets.min_answer_agreement),
        check("acceptance rate", report.acceptance_rate, f">= {targets.min_acceptance:.0%}",
              lambda value: value >= targets.min_acceptance),
        check("least-targeted disease share", least_share, f">= {targets.min_target_share:.0%}",
              lambda value: value >= targets.min_target_share),
    )

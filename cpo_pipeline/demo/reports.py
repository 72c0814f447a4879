"""Synthetic MIMIC-CXR reports: sample CheXpert labels first, then write text that states them.

Every findings and impression text reads back, through `label_report`, as exactly the labels it
was written from, so a label table emitted from the sampled truth agrees with the reports.

Hierarchy as sampled: a parent is never explicitly negative while one of its children is positive
or uncertain ("normal cardiomediastinal silhouette" beside cardiomegaly), and a positive Pneumonia
or Consolidation always comes with a positive Lung Opacity (the opacity is how they show). The
other children of Lung Opacity (edema, atelectasis, lesions) do not force it, as in MIMIC-CXR,
where the labeller only marks an opacity the text names.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

import numpy as np

from cpo_pipeline.radiology.chexpert import (
    CHEXPERT_LABELS,
    HIERARCHY,
    LABEL_NEGATIVE,
    LABEL_POSITIVE,
    LABEL_UNCERTAIN,
    TRAIN_PREVALENCE,
    UNCERTAIN_RATE,
)
from cpo_pipeline.radiology.labeller import no_finding
from cpo_pipeline.radiology.phrase_bank import (
    EXPLICIT_NEGATIVE_RATE,
    FINDINGS_ORDER,
    HEDGES,
    LISTED_NEGATIONS,
    LUNG_FINDINGS,
    LUNGS_CLEAR,
    LUNGS_CLEAR_RATE,
    LUNGS_WELL_EXPANDED,
    LUNGS_WELL_EXPANDED_RATE,
    NEGATIONS,
    NO_OSSEOUS_ABNORMALITY,
    NO_OSSEOUS_ABNORMALITY_RATE,
    PAIRED_HEDGES,
    PAIRED_RATE,
    PAIRED_SENTENCES,
    PHRASINGS,
    draw_slots,
    listed,
    pick,
    positive_statement,
    sentence,
    uses_negative_sentence,
)
from cpo_pipeline.radiology.placement import Placement, placement_of

# ---------------------------------------------------------------------------------------------
# Labels

# label -> (the label driving it, P(positive | driver positive)). Heart failure brings
# cardiomegaly and effusions, effusions bring atelectasis, pneumonia brings consolidation, lines
# and tubes bring pneumothorax. Without the driver the rate is solved so that the marginal stays
# TRAIN_PREVALENCE.
_DRIVERS: dict[str, tuple[str, float]] = {
    "Cardiomegaly": ("Edema", 0.45),
    "Pleural Effusion": ("Edema", 0.50),
    "Atelectasis": ("Pleural Effusion", 0.40),
    "Consolidation": ("Pneumonia", 0.35),
    "Enlarged Cardiomediastinum": ("Cardiomegaly", 0.10),
    "Pneumothorax": ("Support Devices", 0.09),
}
_OPACITY_CAUSES = ("Pneumonia", "Consolidation")

# Drivers before what they drive; Lung Opacity last, after its causes.
_SAMPLING_ORDER = (
    "Support Devices", "Edema", "Pneumonia", "Lung Lesion", "Fracture", "Pleural Other",
    "Cardiomegaly", "Pleural Effusion", "Atelectasis", "Consolidation",
    "Enlarged Cardiomediastinum", "Pneumothorax", "Lung Opacity",
)

# A share of studies is normal: nothing but devices is positive or uncertain. The others carry
# the findings at rates scaled up to keep the published marginals. Independent findings alone
# would leave No Finding near 26%; this share brings it to the published 33%.
_NORMAL_STUDY_SHARE = 0.19


def _share_that_can_carry(label: str) -> float:
    return 1.0 if label == "Support Devices" else 1.0 - _NORMAL_STUDY_SHARE


_PREVALENCE_IF_CARRIED = {
    label: TRAIN_PREVALENCE[label] / _share_that_can_carry(label) for label in _SAMPLING_ORDER
}
_UNCERTAIN_IF_NOT_POSITIVE = {
    label: UNCERTAIN_RATE[label]
    / _share_that_can_carry(label)
    / (1.0 - _PREVALENCE_IF_CARRIED[label])
    for label in _SAMPLING_ORDER
}


def _rate_without_driver(label: str) -> float:
    driver, given_driver = _DRIVERS[label]
    driver_rate = _PREVALENCE_IF_CARRIED[driver]
    return (_PREVALENCE_IF_CARRIED[label] - driver_rate * given_driver) / (1.0 - driver_rate)


_RATE_WITHOUT_DRIVER = {label: _rate_without_driver(label) for label in _DRIVERS}
# Consolidation is driven by pneumonia: P(either) = P(pneumonia) + P(no pneumonia) P(cons | none).
_PNEUMONIA_RATE = _PREVALENCE_IF_CARRIED["Pneumonia"]
_OPACITY_CAUSE_RATE = (
    _PNEUMONIA_RATE + (1.0 - _PNEUMONIA_RATE) * _RATE_WITHOUT_DRIVER["Consolidation"]
)
_OPACITY_RATE_WITHOUT_CAUSE = (
    (_PREVALENCE_IF_CARRIED["Lung Opacity"] - _OPACITY_CAUSE_RATE) / (1.0 - _OPACITY_CAUSE_RATE)
)


# What `shift` moves (the demo's non-stationarity, `DemoConfig.drift`): a heart-failure course
# that worsens from a patient's first visit to the last. Edema drives cardiomegaly and effusions,
# effusions drive atelectasis, so those follow.
_SHIFTED = ("Edema", "Pleural Effusion")


def _positive_rate(label: str, labels: dict[str, float | None], shift: float = 0.0) -> float:
    if label == "Lung Opacity":
        if any(labels[cause] == LABEL_POSITIVE for cause in _OPACITY_CAUSES):
            return 1.0
        return _OPACITY_RATE_WITHOUT_CAUSE
    if label in _DRIVERS:
        driver, given_driver = _DRIVERS[label]
        if labels[driver] == LABEL_POSITIVE:
            return given_driver
        rate = _RATE_WITHOUT_DRIVER[label]
    else:
        rate = _PREVALENCE_IF_CARRIED[label]
    return min(1.0, max(0.0, rate * (1.0 + shift))) if label in _SHIFTED else rate


def _is_present(value: float | None) -> bool:
    return value in (LABEL_POSITIVE, LABEL_UNCERTAIN)


def _draw_status(
    label: str, labels: dict[str, float | None], rng: np.random.Generator, may_be_present: bool,
    shift: float = 0.0,
) -> float | None:
    if may_be_present:
        if rng.random() < _positive_rate(label, labels, shift):
            return LABEL_POSITIVE
        if rng.random() < _UNCERTAIN_IF_NOT_POSITIVE[label]:
            return LABEL_UNCERTAIN
    return LABEL_NEGATIVE if rng.random() < EXPLICIT_NEGATIVE_RATE[label] else None


def sample_labels(rng: np.random.Generator, shift: float = 0.0) -> dict[str, float | None]:
    """One study's 14 CheXpert labels with MIMIC-CXR-like prevalence and co-occurrence.

    `shift` (0: the published marginals) scales the share of normal studies by 1 - shift and
    the rates of edema and effusion by 1 + shift (the findings that follow them follow)."""
    labels: dict[str, float | None] = dict.fromkeys(CHEXPERT_LABELS)
    normal = rng.random() < _NORMAL_STUDY_SHARE * max(0.0, 1.0 - shift)
    for label in _SAMPLING_ORDER:
        may_be_present = not normal or label == "Support Devices"
        labels[label] = _draw_status(label, labels, rng, may_be_present, shift)
    for parent, children in HIERARCHY.items():
        if labels[parent] == LABEL_NEGATIVE and any(_is_present(labels[c]) for c in children):
            labels[parent] = None
    labels["No Finding"] = no_finding(labels)
    return labels


# ---------------------------------------------------------------------------------------------
# Sentences

@dataclass(frozen=True)
class StudyDetails:
    """What one study's reports say about each stated label, shared by findings and impression.

    Every label stated in `labels` appears once: in a sentence of its own or shared with another
    label (`sentences`, keyed by the labels it states), or as a noun phrase that each text wraps
    in its own hedge (`hedged`) or negation list (`negated`). Side, size, lobe and device are
    fixed here, so the impression repeats what the findings describe.
    """

    labels: dict[str, float | None]
    sentences: dict[tuple[str, ...], str]
    hedged: dict[str, str]
    negated: dict[str, str]

    def placements(self) -> dict[str, Placement]:
        """Where the text puts each present (positive or uncertain) finding, as its own words
        say (`placement_of`): what the painter draws, so image and report agree."""
        stated = {label: text for labels, text in self.sentences.items() for label in labels}
        stated |= self.hedged
        return {label: placement_of(text) for label, text in stated.items()
                if _is_present(self.labels[label])}


def sample_details(labels: dict[str, float | None], rng: np.random.Generator) -> StudyDetails:
    """Draw the wording and the facts (side, size, lobe, device ...) of every stated label."""
    if labels["No Finding"] != no_finding(labels):
        raise ValueError(
            f"No Finding is {labels['No Finding']} but the other labels make it "
            f"{no_finding(labels)}; a report cannot state both"
        )
    stated = {label: labels[label] for label in FINDINGS_ORDER if labels[label] is not None}
    slots = draw_slots(rng)
    sentences: dict[tuple[str, ...], str] = {}
    for (first, second, status), templates in PAIRED_SENTENCES.items():
        if (stated.get(first) == status and stated.get(second) == status
                and rng.random() < PAIRED_RATE):
            sentences[first, second] = pick(rng, templates).format(**slots)
            del stated[first], stated[second]
    hedged: dict[str, str] = {}
    negated: dict[str, str] = {}
    for label, status in stated.items():
        phrasing = PHRASINGS[label]
        if status == LABEL_POSITIVE:
            sentences[label,] = positive_statement(label, slots, rng)
        elif status == LABEL_UNCERTAIN:
            if phrasing.uncertain_sentences and (not phrasing.uncertain or rng.random() < 0.7):
                sentences[label,] = pick(rng, phrasing.uncertain_sentences).format(**slots)
            else:
                hedged[label] = pick(rng, phrasing.uncertain).format(**slots)
        elif uses_negative_sentence(label, rng):
            sentences[label,] = pick(rng, phrasing.negative_sentences).format(**slots)
        else:
            negated[label] = pick(rng, phrasing.negated)
    return StudyDetails(dict(labels), sentences, hedged, negated)


@dataclass(frozen=True)
class _Statement:
    text: str
    labels: tuple[str, ...]
    status: float


def _shuffled_groups(
    phrases: dict[str, str], rng: np.random.Generator, largest: int
) -> list[tuple[str, ...]]:
    order = [list(phrases)[i] for i in rng.permutation(len(phrases))]
    groups = []
    while order:
        size = int(rng.integers(1, largest + 1))
        groups.append(tuple(order[:size]))
        order = order[size:]
    return groups


def _statements(details: StudyDetails, rng: np.random.Generator) -> list[_Statement]:
    """One sentence per stated label, pair of labels, or hedged / negated list, worded at random."""
    statements = [
        _Statement(text, stated, details.labels[stated[0]])
        for stated, text in details.sentences.items()
    ]
    for group in _shuffled_groups(details.hedged, rng, largest=2):
        frame = pick(rng, HEDGES if len(group) == 1 else PAIRED_HEDGES)
        text = frame.format(*(details.hedged[label] for label in group))
        statements.append(_Statement(text, group, LABEL_UNCERTAIN))
    for group in _shuffled_groups(details.negated, rng, largest=3):
        frame = pick(rng, NEGATIONS if len(group) == 1 else LISTED_NEGATIONS)
        text = frame.format(listed([details.negated[label] for label in group]))
        statements.append(_Statement(text, group, LABEL_NEGATIVE))
    return statements


def _details_for(
    labels: dict[str, float | None], rng: np.random.Generator, details: StudyDetails | None
) -> StudyDetails:
    if details is None:
        return sample_details(labels, rng)
    if details.labels != labels:
        raise ValueError(
            f"study details were sampled for labels {details.labels}, not for {labels}"
        )
    return details


def _anatomical_position(statement: _Statement) -> int:
    return min(FINDINGS_ORDER.index(label) for label in statement.labels)


def _is_about_devices(statement: _Statement) -> bool:
    return "Support Devices" in statement.labels


def write_findings(
    labels: dict[str, float | None],
    rng: np.random.Generator,
    details: StudyDetails | None = None,
) -> str:
    """A FINDINGS paragraph, in anatomical order, that `label_report` reads back as `labels`."""
    details = _details_for(labels, rng, details)
    statements = sorted(_statements(details, rng), key=_anatomical_position)
    sentences = [statement.text for statement in statements]
    lungs_free = not any(_is_present(labels[label]) for label in LUNG_FINDINGS)
    after_devices = sum(1 for statement in statements if _is_about_devices(statement))
    if lungs_free and (not sentences or rng.random() < LUNGS_CLEAR_RATE):
        sentences.insert(after_devices, LUNGS_CLEAR)
    elif not _is_present(labels["Atelectasis"]) and rng.random() < LUNGS_WELL_EXPANDED_RATE:
        sentences.insert(after_devices, LUNGS_WELL_EXPANDED)
    if not _is_present(labels["Fracture"]) and rng.random() < NO_OSSEOUS_ABNORMALITY_RATE:
        sentences.append(NO_OSSEOUS_ABNORMALITY)
    return " ".join(sentence(text) for text in sentences)


def write_impression(
    labels: dict[str, float | None],
    rng: np.random.Generator,
    details: StudyDetails | None = None,
) -> str:
    """An IMPRESSION, most important first and sometimes numbered, stating exactly `labels`."""
    details = _details_for(labels, rng, details)
    rank = {LABEL_POSITIVE: 0, LABEL_UNCERTAIN: 1, LABEL_NEGATIVE: 2}
    statements = sorted(
        _statements(details, rng),
        key=lambda s: (_is_about_devices(s), rank[s.status], _anatomical_position(s)),
    )
    sentences = [statement.text for statement in statements]
    if labels["No Finding"] == LABEL_POSITIVE and (not sentences or rng.random() < 0.7):
        sentences.insert(0, pick(rng, ("no acute cardiopulmonary process",
                                        "no acute intrathoracic process")))
    if len(sentences) > 1 and rng.random() < 0.4:
        return "\n".join(f"{n}. {sentence(s)}" for n, s in enumerate(sentences, start=1))
    return " ".join(sentence(text) for text in sentences)


# ---------------------------------------------------------------------------------------------
# Whole reports

# Edge cases of real MIMIC-CXR reports. The labelled section (impression > findings > last
# paragraph) lands ~83% / ~12% / ~5% of the time, as in the real data.
REPORT_LAYOUTS: tuple[str, ...] = (
    "standard",
    "impression_only",
    "findings_only",
    "no_findings_header",
    "addendum_on_top",
    "wet_read",
    "misspelled_header",
    "findings_in_last_paragraph",
)
_LAYOUT_WEIGHTS = (0.62, 0.10, 0.12, 0.04, 0.03, 0.03, 0.01, 0.05)
_LABELLED_BY_FINDINGS = ("findings_only", "findings_in_last_paragraph")
# Misspellings the official section splitter maps back to "impression".
_MISSPELLED_IMPRESSION = ("IMPRESSON", "IMPRESION", "IMPESSION")


@dataclass(frozen=True)
class ReportParts:
    """The free-text parts of one report and the layout that arranges them."""

    indication: str
    comparison: str
    findings: str
    impression: str
    layout: str
    # Where the text puts each present finding (`StudyDetails.placements`).
    placements: dict[str, Placement] = field(default_factory=dict)


def write_report_parts(
    labels: dict[str, float | None], rng: np.random.Generator, layout: str | None = None
) -> ReportParts:
    """Every part of one report stating `labels`; the layout is drawn when not given."""
    if layout is None:
        layout = REPORT_LAYOUTS[int(rng.choice(len(REPORT_LAYOUTS), p=_LAYOUT_WEIGHTS))]
    elif layout not in REPORT_LAYOUTS:
        raise ValueError(f"unknown report layout {layout!r}; expected one of {REPORT_LAYOUTS}")
    reason = pick(rng, ("shortness of breath", "fever and cough", "chest pain", "hypoxia",
                         "worsening dyspnea", "cough, evaluate for pneumonia"))
    comparison = pick(rng, ("___.", "Chest radiograph from ___.", "None.",
                             "Prior chest radiographs ___ and ___."))
    details = sample_details(labels, rng)
    return ReportParts(
        indication=f"___-year-old {pick(rng, ('man', 'woman'))} with {reason}.",
        comparison=comparison,
        findings=write_findings(labels, rng, details),
        impression=write_impression(labels, rng, details),
        layout=layout,
        placements=details.placements(),
    )


def labelled_text(parts: ReportParts) -> str:
    """The part the official section rule labels (impression > findings > last paragraph)."""
    return parts.findings if parts.layout in _LABELLED_BY_FINDINGS else parts.impression


_WIDTH = 78
_RULE = " " + "_" * _WIDTH
_BLANK = " "


def _title(title: str) -> str:
    return " " * 33 + title


def _paragraph(text: str, header: str | None = None) -> list[str]:
    """Lines of one paragraph, each led by one space, wrapped at the report width."""
    lines = []
    for line in text.split("\n"):
        if header is not None:
            line, header = f"{header}:  {line}", None
        lines.extend(" " + chunk for chunk in textwrap.wrap(
            line, width=_WIDTH - 1, break_long_words=False, break_on_hyphens=False,
        ))
    return lines


def _section(header: str, text: str) -> list[str]:
    return [f" {header}:", _BLANK, *_paragraph(text), _BLANK]


def compose_report(parts: ReportParts, rng: np.random.Generator, *, portable: bool = False) -> str:
    """The full MIMIC-CXR style report text of `parts`, arranged by `parts.layout`; `portable`
    names the examination a portable AP film instead of PA and lateral, to match the images."""
    examination = "CHEST (PORTABLE AP)" if portable else "CHEST (PA AND LAT)"
    technique = "Single frontal view of the chest." if portable else "Chest PA and lateral."
    layout = parts.layout
    lines: list[str] = []
    if layout == "addendum_on_top":
        lines += [_title("FINAL ADDENDUM"), *_paragraph(
            "The findings were discussed with Dr. ___ by telephone at ___ on ___.", "ADDENDUM"),
            _BLANK, _RULE]
    elif layout == "wet_read":
        clock = f"{int(rng.integers(1, 13))}:{int(rng.integers(60)):02d} {pick(rng, ('AM', 'PM'))}"
        lines += [f" WET READ: ___ ___ {clock}", *_paragraph(parts.impression), _RULE]
    lines += [_title("FINAL REPORT"), *_paragraph(examination, "EXAMINATION"), _BLANK,
              *_paragraph(parts.indication, "INDICATION"), _BLANK,
              *_paragraph(technique, "TECHNIQUE"), _BLANK,
              *_paragraph(parts.comparison, "COMPARISON"), _BLANK]
    if layout in ("no_findings_header", "findings_in_last_paragraph"):
        lines += [*_paragraph(parts.findings), _BLANK]
    elif layout != "impression_only":
        lines += _section("FINDINGS", parts.findings)
    if layout == "misspelled_header":
        lines += _section(pick(rng, _MISSPELLED_IMPRESSION), parts.impression)
    elif layout not in _LABELLED_BY_FINDINGS:
        lines += _section("IMPRESSION", parts.impression)
    return "\n".join(lines).rstrip() + "\n"

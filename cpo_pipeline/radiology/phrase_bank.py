"""How reports word each CheXpert finding: the phrase bank the demo reports are written from and
the offline expert rewrites findings with, so a counterfactual speaks in the report's own voice.

Templates fill slots drawn per study (`draw_slots`: side, size, degree, lobe, rib, depth, nodule
size). `SIGNS` are radiographic signs of a finding in the concept graph's attribute vocabulary
("blunting of the costophrenic angle"), which a positive statement carries at `SIGN_RATE`
("... with Kerley B lines"), in factual and counterfactual text alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cpo_pipeline.radiology.chexpert import LABEL_NEGATIVE, LABEL_POSITIVE, LABEL_UNCERTAIN


@dataclass(frozen=True)
class Phrasing:
    """How reports state one label. Templates fill slots such as {side} and {lobe}.

    `positive`, `negative_sentences` and `uncertain_sentences` are whole sentences; `uncertain`
    and `negated` are bare noun phrases that hedges ("possible ...") and negations ("no ..., ...
    or ...") wrap, alone or in lists.
    """

    positive: tuple[str, ...]
    uncertain: tuple[str, ...] = ()
    negated: tuple[str, ...] = ()
    negative_sentences: tuple[str, ...] = ()
    uncertain_sentences: tuple[str, ...] = ()


PHRASINGS: dict[str, Phrasing] = {
    "Support Devices": Phrasing(
        positive=(
            "{side}-sided PICC with tip in the low SVC",
            "endotracheal tube terminates {depth} above the carina",
            "nasogastric tube courses below the diaphragm with the tip in the stomach",
            "{side} internal jugular central venous catheter with tip at the cavoatrial junction",
            "left chest wall pacemaker with leads in the right atrium and right ventricle",
            "{side} chest tube in place",
        ),
        uncertain_sentences=("possible retained catheter fragment in the {side} chest",),
        negative_sentences=(
            "the endotracheal tube has been removed",
            "interval removal of the nasogastric tube",
            "the {side} PICC has been removed",
        ),
    ),
    "Lung Opacity": Phrasing(
        positive=(
            "patchy opacity in the {lobe}",
            "bibasilar opacities",
            "hazy {lobe} opacification",
            "increased interstitial markings",
        ),
        uncertain=("faint opacity at the {side} lung base", "subtle {lobe} opacity"),
        negated=("focal opacity", "focal airspace opacity"),
    ),
    "Consolidation": Phrasing(
        positive=(
            "patchy {lobe} consolidation",
            "focal consolidation in the {lobe}",
            "dense retrocardiac consolidation",
        ),
        uncertain=(
            "focal consolidation at the {side} base",
            "small area of consolidation in the {lobe}",
        ),
        negated=("focal consolidation", "consolidation"),
    ),
    "Pneumonia": Phrasing(
        positive=(
            "{lobe} pneumonia",
            "findings are consistent with {lobe} pneumonia",
            "multifocal pneumonia",
            "pneumonia in the {lobe}",
        ),
        uncertain=(
            "early pneumonia", "{lobe} pneumonia", "aspiration pneumonia", "infectious process",
        ),
        negated=("pneumonia",),
        negative_sentences=("interval resolution of the {lobe} pneumonia",),
    ),
    "Atelectasis": Phrasing(
        positive=(
            "{degree} bibasilar atelectasis",
            "subsegmental atelectasis at the {side} lung base",
            "plate-like atelectasis in the {side} mid lung",
            "{lobe} collapse",
        ),
        uncertain=("subsegmental atelectasis at the {side} base", "{side} basilar atelectasis"),
        negated=("atelectasis",),
    ),
    "Edema": Phrasing(
        positive=(
            "{degree} pulmonary edema",
            "{degree} interstitial pulmonary edema",
            "pulmonary vascular congestion with {degree} interstitial edema",
            "findings are consistent with {degree} congestive heart failure",
            "{degree} interstitial edema at the lung bases",
        ),
        uncertain=(
            "mild pulmonary edema", "mild interstitial edema", "pulmonary vascular congestion",
        ),
        negated=("pulmonary edema", "pulmonary vascular congestion"),
    ),
    "Lung Lesion": Phrasing(
        positive=(
            "a {nodule} nodule in the {lobe}",
            "a spiculated mass in the {lobe}",
            "multiple pulmonary nodules",
        ),
        uncertain=("{nodule} nodule in the {lobe}", "small nodule in the {lobe}"),
        negated=("suspicious pulmonary nodule", "pulmonary mass"),
    ),
    "Pleural Effusion": Phrasing(
        positive=(
            "{size} {side} pleural effusion",
            "{size} bilateral pleural effusions",
            "there is a layering {side} pleural effusion",
            "a {size} {side} effusion is present",
            "{size} pleural effusion at the {side} lung base",
        ),
        uncertain=("small {side} pleural effusion", "trace {side} effusion"),
        negated=("pleural effusion", "effusion"),
        negative_sentences=("the previously seen {side} pleural effusion has resolved",),
    ),
    "Pneumothorax": Phrasing(
        positive=("{size} {side} apical pneumothorax", "there is a {size} {side} pneumothorax",
                  "{size} pneumothorax at the {side} apex"),
        uncertain=("tiny {side} apical pneumothorax", "small {side} pneumothorax"),
        negated=("pneumothorax",),
        negative_sentences=("the {side} pneumothorax has resolved",),
    ),
    "Pleural Other": Phrasing(
        positive=("{side} apical pleural thickening", "calcified pleural plaques",
                  "pleural thickening at the {side} apex"),
        uncertain=("pleural thickening at the {side} apex",),
        negated=("pleural thickening",),
    ),
    "Cardiomegaly": Phrasing(
        positive=(
            "{degree} cardiomegaly",
            "the heart is {degree}ly enlarged",
            "the cardiac silhouette is enlarged",
            "{degree} enlargement of the cardiac silhouette",
        ),
        uncertain=("mild cardiomegaly",),
        negated=("cardiomegaly",),
        negative_sentences=(
            "heart size is normal",
            "the heart is normal in size",
            "normal heart size",
            "the cardiac silhouette is within normal limits",
            "the heart is not enlarged",
        ),
        uncertain_sentences=(
            "heart size is stable",
            "stable heart size",
            "the cardiac silhouette is unchanged",
            "heart size is top normal",
            "borderline cardiomegaly",
            "the heart is stable in size",
        ),
    ),
    "Enlarged Cardiomediastinum": Phrasing(
        positive=(
            "the mediastinum is widened",
            "widened mediastinum",
            "enlarged cardiomediastinal silhouette",
        ),
        uncertain=("mediastinal widening",),
        negated=("mediastinal widening",),
        negative_sentences=(
            "the mediastinal contours are normal",
            "normal cardiomediastinal silhouette",
            "the cardiomediastinal silhouette is unremarkable",
        ),
        uncertain_sentences=(
            "stable cardiomediastinal silhouette",
            "the mediastinal contours are unchanged",
            "the cardiomediastinal silhouette is stable",
        ),
    ),
    "Fracture": Phrasing(
        positive=(
            "acute fracture of the {side} {rib} rib",
            "healed {side} rib fractures",
            "nondisplaced fracture of the {side} posterior {rib} rib",
        ),
        uncertain=("nondisplaced fracture of the {side} {rib} rib",),
        negated=("displaced rib fracture", "acute rib fracture"),
    ),
}

# Of the studies where a finding is neither positive nor uncertain, the share whose report says
# it is absent ("no pneumothorax"). Our guesses from reading reports, not measurements.
EXPLICIT_NEGATIVE_RATE: dict[str, float] = {
    "Pneumothorax": 0.40,
    "Pleural Effusion": 0.30,
    "Consolidation": 0.20,
    "Pneumonia": 0.15,
    "Cardiomegaly": 0.15,
    "Edema": 0.12,
    "Enlarged Cardiomediastinum": 0.10,
    "Fracture": 0.05,
    "Lung Opacity": 0.03,
    "Atelectasis": 0.02,
    "Lung Lesion": 0.02,
    "Support Devices": 0.02,
    "Pleural Other": 0.01,
}

# Normal statements a report makes when nothing it covers is found, and how often: "the lungs
# are clear" when no lung finding is present or hedged, "the lungs are well expanded" when one is
# but no atelectasis, "no acute osseous abnormality" when no fracture is. Our guesses, like the rates above; a deletion writes them at the same rates.
LUNGS_CLEAR = "the lungs are clear"
LUNGS_CLEAR_RATE = 0.6
# Said instead, at this rate, when a lung finding other than atelectasis is present.
LUNGS_WELL_EXPANDED = "the lungs are well expanded"
LUNGS_WELL_EXPANDED_RATE = 0.3
NO_OSSEOUS_ABNORMALITY = "no acute osseous abnormality"
NO_OSSEOUS_ABNORMALITY_RATE = 0.3

# One sentence for two labels of the same status, used at `PAIRED_RATE` when both hold.
PAIRED_RATE = 0.6
PAIRED_SENTENCES: dict[tuple[str, str, float], tuple[str, ...]] = {
    ("Lung Opacity", "Pneumonia", LABEL_POSITIVE): (
        "patchy opacity in the {lobe} consistent with pneumonia",
        "{lobe} opacity compatible with pneumonia",
    ),
    ("Pleural Effusion", "Atelectasis", LABEL_POSITIVE): (
        "{size} {side} pleural effusion with adjacent atelectasis",
    ),
    ("Cardiomegaly", "Edema", LABEL_POSITIVE): (
        "{degree} cardiomegaly with pulmonary vascular congestion",
    ),
    ("Cardiomegaly", "Enlarged Cardiomediastinum", LABEL_NEGATIVE): (
        "heart size and mediastinal contours are normal",
        "the heart size and cardiomediastinal silhouette are normal",
        "normal heart size and mediastinal contours",
    ),
    ("Cardiomegaly", "Enlarged Cardiomediastinum", LABEL_UNCERTAIN): (
        "heart size and mediastinal contours are stable",
        "stable heart size and mediastinal contours",
    ),
}

# The second finding of a positive pair as a clause its partner's statement takes ("...
# effusion with adjacent atelectasis"): how a finding joins one already stated, as the paired
# sentences above word it. Target -> (partner, clauses).
PAIRED_CLAUSES: dict[str, tuple[str, tuple[str, ...]]] = {
    "Pneumonia": ("Lung Opacity", ("consistent with pneumonia", "compatible with pneumonia")),
    "Atelectasis": ("Pleural Effusion", ("with adjacent atelectasis",)),
    "Edema": ("Cardiomegaly", ("with pulmonary vascular congestion",)),
}

HEDGES = ("possible {}", "cannot exclude {}", "{} cannot be excluded", "questionable {}")
PAIRED_HEDGES = ("possible {} or {}", "{} versus {}", "cannot exclude {} or {}")
NEGATIONS = ("no {}", "there is no {}", "no evidence of {}", "{} is not seen")
LISTED_NEGATIONS = ("no {}", "there is no {}", "no evidence of {}")

# Anatomical reading order of a findings section: devices, lungs, pleura, heart, bones.
FINDINGS_ORDER = (
    "Support Devices", "Lung Opacity", "Consolidation", "Pneumonia", "Atelectasis", "Edema",
    "Lung Lesion", "Pleural Effusion", "Pneumothorax", "Pleural Other", "Cardiomegaly",
    "Enlarged Cardiomediastinum", "Fracture",
)
LUNG_FINDINGS = (
    "Lung Opacity", "Consolidation", "Pneumonia", "Atelectasis", "Edema", "Lung Lesion",
)

LOBES = ("right lower lobe", "left lower lobe", "right upper lobe", "left upper lobe",
          "right middle lobe")
RIBS = ("fourth", "fifth", "sixth", "seventh", "eighth", "ninth")
NODULE_SIZES = ("6 mm", "8 mm", "1.2 cm", "1.5 cm", "2.3 cm")


def pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def draw_slots(rng: np.random.Generator) -> dict[str, str]:
    """One study's side, size, lobe ...: shared by all its findings, so they tell one story."""
    return {
        "side": pick(rng, ("right", "left")),
        "size": pick(rng, ("small", "moderate", "large")),
        "degree": pick(rng, ("mild", "moderate", "severe")),
        "lobe": pick(rng, LOBES),
        "rib": pick(rng, RIBS),
        "depth": f"{int(rng.integers(2, 7))} cm",
        "nodule": pick(rng, NODULE_SIZES),
    }


# Signs a positive statement of a finding may carry, each a term of the concept graph's attribute
# vocabulary and none a mention of another CheXpert finding. Our guess at how often a report
# names one; the same rate on both sides of a pair, so a sign tells nothing by itself.
SIGN_RATE = 0.25
SIGNS: dict[str, tuple[str, ...]] = {
    "Atelectasis": ("volume loss", "fissure displacement"),
    "Consolidation": ("air bronchograms",),
    "Edema": ("Kerley B lines", "peribronchial cuffing"),
    "Lung Lesion": ("spiculated margins", "well-circumscribed margins", "lobulated contour"),
    "Pleural Effusion": ("blunting of the costophrenic angle", "a meniscus"),
    "Pneumonia": ("air bronchograms",),
    "Pneumothorax": ("a visible visceral pleural line", "a deep sulcus sign"),
}


def with_sign(statement: str, label: str, rng: np.random.Generator) -> str:
    """`statement` of a positive `label`, carrying one of its `SIGNS` at `SIGN_RATE`."""
    signs = SIGNS.get(label, ())
    if not signs or rng.random() >= SIGN_RATE:
        return statement
    return f"{statement} with {pick(rng, signs)}"


def positive_statement(label: str, slots: dict[str, str], rng: np.random.Generator,
                       phrasings: tuple[str, ...] | None = None) -> str:
    """How a report states a positive `label`: one of its phrasings (or of `phrasings`, a
    subset that fits what is known), filled, carrying a sign at `SIGN_RATE`."""
    options = phrasings or PHRASINGS[label].positive
    return with_sign(pick(rng, options).format(**slots), label, rng)


# How often a finding that has a sentence of its own for its absence ("the previously seen
# pleural effusion has resolved") is denied with it rather than in a negation ("no ...").
NEGATIVE_SENTENCE_RATE = 0.4


def uses_negative_sentence(label: str, rng: np.random.Generator) -> bool:
    """Whether a report denies `label` with one of its `negative_sentences` (at
    `NEGATIVE_SENTENCE_RATE`, always when it has no negated phrase) rather than a negation."""
    phrasing = PHRASINGS[label]
    return bool(phrasing.negative_sentences) and (
        not phrasing.negated or rng.random() < NEGATIVE_SENTENCE_RATE)


def sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


def listed(phrases: list[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    if len(phrases) == 2:
        return f"{phrases[0]} or {phrases[1]}"
    return ", ".join(phrases[:-1]) + f", or {phrases[-1]}"

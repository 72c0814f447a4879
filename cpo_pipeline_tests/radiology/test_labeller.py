import pytest

from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS
from cpo_pipeline.radiology.labeller import Mention, find_mentions, label_report, no_finding

POS, NEG, UNC = 1.0, 0.0, -1.0


def labels(**given: float) -> dict[str, float | None]:
    """All 14 labels, None except those given (keyword names use _ for spaces)."""
    expected: dict[str, float | None] = dict.fromkeys(CHEXPERT_LABELS)
    for name, value in given.items():
        expected[name.replace("_", " ")] = value
    return expected


CASES = {
    # rule: a mention with no cue is positive
    "positive mention": ("Moderate right pleural effusion.", labels(Pleural_Effusion=POS)),
    "case does not matter": ("MODERATE RIGHT PLEURAL EFFUSION.", labels(Pleural_Effusion=POS)),
    "several sentences": (
        "Mild pulmonary edema. Patchy left lower lobe consolidation.",
        labels(Edema=POS, Consolidation=POS),
    ),
    # negation
    "no X": ("No pneumothorax.", labels(Pneumothorax=NEG, No_Finding=POS)),
    "without X": (
        "Cardiomegaly without pulmonary edema.", labels(Cardiomegaly=POS, Edema=NEG),
    ),
    "X is absent": ("Pleural effusion is absent.", labels(Pleural_Effusion=NEG, No_Finding=POS)),
    "negative for": ("Negative for pneumonia.", labels(Pneumonia=NEG, No_Finding=POS)),
    "no evidence of": ("No evidence of pneumonia.", labels(Pneumonia=NEG, No_Finding=POS)),
    "free of": ("The chest is free of consolidation.", labels(Consolidation=NEG, No_Finding=POS)),
    "has resolved": (
        "The previously seen left pleural effusion has resolved.",
        labels(Pleural_Effusion=NEG, No_Finding=POS),
    ),
    "device removed": (
        "The endotracheal tube has been removed.", labels(Support_Devices=NEG, No_Finding=POS),
    ),
    "not seen": ("Pneumothorax is not seen.", labels(Pneumothorax=NEG, No_Finding=POS)),
    "no change in X asserts X": (
        "No change in the moderate right effusion.", labels(Pleural_Effusion=POS),
    ),
    # negation distributes over a coordinated list, but not past its clause
    "no X or Y": (
        "No pleural effusion or pneumothorax.",
        labels(Pleural_Effusion=NEG, Pneumothorax=NEG, No_Finding=POS),
    ),
    "no X, Y, or Z is seen": (
        "No focal consolidation, pleural effusion, or pneumothorax is seen.",
        labels(Consolidation=NEG, Pleural_Effusion=NEG, Pneumothorax=NEG, No_Finding=POS),
    ),
    "X and Y are absent": (
        "Pleural effusion and pneumothorax are absent.",
        labels(Pleural_Effusion=NEG, Pneumothorax=NEG, No_Finding=POS),
    ),
    "negation stops at the sentence end": (
        "No pneumothorax. Small left effusion.",
        labels(Pneumothorax=NEG, Pleural_Effusion=POS),
    ),
    "negation stops at but": (
        "No pneumothorax, but there is a small left effusion.",
        labels(Pneumothorax=NEG, Pleural_Effusion=POS),
    ),
    "negation stops at a new subject": (
        "No effusion and the heart is enlarged.",
        labels(Pleural_Effusion=NEG, Cardiomegaly=POS),
    ),
    "negation stops at a graded finding": (
        "No pneumothorax, small left effusion.",
        labels(Pneumothorax=NEG, Pleural_Effusion=POS),
    ),
    "predicate does not reach past a comma": (
        "Moderate cardiomegaly, the pneumothorax has resolved.",
        labels(Cardiomegaly=POS, Pneumothorax=NEG),
    ),
    # pre-negation uncertainty wins over the negation inside it
    "cannot exclude X": ("Cannot exclude early pneumonia.", labels(Pneumonia=UNC)),
    "X cannot be excluded": ("Pneumonia cannot be excluded.", labels(Pneumonia=UNC)),
    "X is not excluded": ("Infection is not excluded.", labels(Pneumonia=UNC)),
    "top normal heart size": ("Heart size is top normal.", labels(Cardiomegaly=UNC)),
    "upper limits of normal": (
        "Heart size is at the upper limits of normal.", labels(Cardiomegaly=UNC),
    ),
    # post-negation uncertainty
    "possible X": ("Possible small left effusion.", labels(Pleural_Effusion=UNC)),
    "X versus Y": ("Atelectasis versus pneumonia.", labels(Atelectasis=UNC, Pneumonia=UNC)),
    "X vs. Y": ("Atelectasis vs. pneumonia.", labels(Atelectasis=UNC, Pneumonia=UNC)),
    "suggestive of": ("Findings suggestive of pneumonia.", labels(Pneumonia=UNC)),
    "likely": ("Likely bibasilar atelectasis.", labels(Atelectasis=UNC)),
    "a hedge governs what follows it": (
        "Left lower lobe opacity may represent atelectasis or pneumonia.",
        labels(Lung_Opacity=POS, Atelectasis=UNC, Pneumonia=UNC),
    ),
    "no opacity to suggest X negates X": (
        "No focal consolidation to suggest pneumonia.",
        labels(Consolidation=NEG, Pneumonia=NEG, No_Finding=POS),
    ),
    "heart size is stable": ("Heart size is stable.", labels(Cardiomegaly=UNC)),
    "stable heart size": ("Stable heart size.", labels(Cardiomegaly=UNC)),
    "stable cardiomegaly stays positive": (
        "Stable moderate cardiomegaly.", labels(Cardiomegaly=POS),
    ),
    # normal anatomy
    "heart size is normal": ("Heart size is normal.", labels(Cardiomegaly=NEG, No_Finding=POS)),
    "normal cardiac silhouette": (
        "Normal cardiac silhouette.", labels(Cardiomegaly=NEG, No_Finding=POS),
    ),
    "the heart is not enlarged": (
        "The heart is not enlarged.", labels(Cardiomegaly=NEG, No_Finding=POS),
    ),
    "heart and mediastinum are normal": (
        "Heart size and mediastinal contours are normal.",
        labels(Cardiomegaly=NEG, Enlarged_Cardiomediastinum=NEG, No_Finding=POS),
    ),
    "the heart is enlarged": ("The heart is mildly enlarged.", labels(Cardiomegaly=POS)),
    "a device over the heart says nothing of its size": (
        "Pacemaker leads overlie the heart.", labels(Support_Devices=POS, No_Finding=POS),
    ),
    "the lungs are clear mentions nothing": ("The lungs are clear.", labels(No_Finding=POS)),
    "well expanded lungs are not atelectasis": (
        "The lungs are well expanded.", labels(No_Finding=POS),
    ),
    # un-mention exceptions
    "pericardial effusion is not pleural effusion": (
        "Small pericardial effusion.", labels(No_Finding=POS),
    ),
    "kerley b lines are edema, not a device": (
        "Kerley B lines.", labels(Edema=POS),
    ),
    # aggregation per label: positive > uncertain > negative
    "negative and uncertain make uncertain": (
        "No effusion on the right. Possible small left effusion.",
        labels(Pleural_Effusion=UNC),
    ),
    "positive and uncertain make positive": (
        "Possible small left effusion. Moderate right effusion.",
        labels(Pleural_Effusion=POS),
    ),
    # No Finding
    "only support devices still means no finding": (
        "Endotracheal tube terminates 4 cm above the carina.",
        labels(Support_Devices=POS, No_Finding=POS),
    ),
    "an uncertain finding is a finding": ("Possible pneumonia.", labels(Pneumonia=UNC)),
    "empty text has no labels": ("", labels()),
    "blank text has no labels": (" \n \n", labels()),
    # MIMIC layout
    "wrapped lines with the leading space": (
        " No pleural\n effusion or\n pneumothorax.",
        labels(Pleural_Effusion=NEG, Pneumothorax=NEG, No_Finding=POS),
    ),
    "a decimal point does not end the sentence": (
        "A 1.2 cm nodule in the right upper lobe. No effusion.",
        labels(Lung_Lesion=POS, Pleural_Effusion=NEG),
    ),
    "numbered impression": (
        " 1. Moderate right pleural effusion.\n 2. No pneumothorax.",
        labels(Pleural_Effusion=POS, Pneumothorax=NEG),
    ),
}


@pytest.mark.parametrize(("text", "expected"), CASES.values(), ids=CASES.keys())
def test_label_report(text: str, expected: dict[str, float | None]) -> None:
    assert label_report(text) == expected


def test_mentions_carry_the_original_phrase_offsets_and_status() -> None:
    assert find_mentions("No pneumothorax. Heart size is ENLARGED.") == [
        Mention("Pneumothorax", "pneumothorax", 3, 15, NEG),
        Mention("Cardiomegaly", "Heart size", 17, 27, POS),
    ]


def test_one_phrase_can_mention_two_observations() -> None:
    found = {(m.label, m.phrase) for m in find_mentions("Nodular opacity in the left apex.")}
    assert found == {("Lung Lesion", "Nodular opacity"), ("Lung Opacity", "opacity")}


def test_no_finding_ignores_support_devices_and_negatives() -> None:
    assert no_finding(labels(Support_Devices=POS, Pneumothorax=NEG)) == POS


def test_no_finding_is_blank_rather_than_negative_when_something_is_uncertain() -> None:
    assert no_finding(labels(Pneumothorax=UNC)) is None

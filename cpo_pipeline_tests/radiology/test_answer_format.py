import pytest

from cpo_pipeline.radiology.answer_format import (
    TrajectoryFormatError,
    format_trajectory,
    parse_trajectory,
    positive_diseases,
)
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS


def _labels(**values):
    labels = dict.fromkeys(CHEXPERT_LABELS)
    labels.update({name.replace("_", " "): value for name, value in values.items()})
    return labels


def test_one_diagnosis_is_named_plainly():
    assert format_trajectory("The heart is enlarged.", ["Cardiomegaly"]) == (
        "<think> The heart is enlarged. </think> The disease of this patient is Cardiomegaly."
    )


def test_several_positives_are_joined_in_chexpert_order_and_devices_are_never_named():
    labels = _labels(Pleural_Effusion=1.0, Cardiomegaly=1.0, Edema=-1.0, Support_Devices=1.0)

    assert positive_diseases(labels) == ("Cardiomegaly", "Pleural Effusion")
    assert format_trajectory("x", positive_diseases(_labels(
        Atelectasis=1.0, Edema=1.0, Pneumothorax=1.0))).endswith(
        "is Atelectasis, Edema and Pneumothorax.")


def test_no_positive_finding_is_phrased_as_no_finding():
    assert positive_diseases(_labels(No_Finding=1.0, Support_Devices=1.0)) == ("No Finding",)
    assert positive_diseases(_labels(Edema=-1.0)) == ("No Finding",)


def test_parse_round_trips_and_collapses_whitespace():
    text = format_trajectory("Small left\n effusion.", ["Pleural Effusion", "Atelectasis"])
    parsed = parse_trajectory(text)

    assert parsed.findings == "Small left effusion."
    assert parsed.diagnoses == ("Pleural Effusion", "Atelectasis")
    assert parsed.text == text


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("The disease of this patient is Edema.", "expected '<think>"),
        ("<think> </think> The disease of this patient is Edema.", "empty"),
        ("<think> x </think> The disease of this patient is Flu.", "unknown diagnosis"),
    ],
)
def test_malformed_answers_are_refused_with_the_reason(answer, message):
    with pytest.raises(TrajectoryFormatError, match=message):
        parse_trajectory(answer)

import pytest

from cpo_pipeline.counterfactuals.verifier import VerifierConfig, token_edits, verify_counterfactual
from cpo_pipeline.radiology.answer_format import format_trajectory

FACTUAL = "The heart is enlarged. No pleural effusion or pneumothorax. Lungs are clear."


def test_a_minimal_edit_toward_the_target_is_accepted():
    candidate = format_trajectory(
        "The heart is normal in size. Moderate left pleural effusion. No pneumothorax. "
        "Lungs are clear.", ["Pleural Effusion"])
    verdict = verify_counterfactual(FACTUAL, candidate, "Cardiomegaly", "Pleural Effusion")

    assert verdict.accepted, verdict.reason
    assert 0 < verdict.edit_tokens <= 24


@pytest.mark.parametrize(
    ("findings", "diagnoses", "reason"),
    [
        ("The heart is enlarged. No pleural effusion or pneumothorax.", ["Pleural Effusion"],
         "labeller does not find Pleural Effusion asserted"),
        ("The heart is enlarged. Small left pleural effusion.", ["Pleural Effusion"],
         "labeller still finds Cardiomegaly asserted"),
        ("Heart size is normal. Small left pleural effusion.", ["Edema"],
         "diagnosis line does not name Pleural Effusion"),
    ],
)
def test_candidates_that_do_not_reach_the_target_are_rejected(findings, diagnoses, reason):
    verdict = verify_counterfactual(
        FACTUAL, format_trajectory(findings, diagnoses), "Cardiomegaly", "Pleural Effusion")

    assert not verdict.accepted
    assert verdict.reason == reason


def test_an_edit_beyond_the_bound_is_rejected():
    rewritten = ("Large left pleural effusion with compressive changes, mediastinal shift to the "
                 "right, and a normal cardiac silhouette, unchanged from prior examinations "
                 "performed at an outside hospital last year with similar technique.")
    verdict = verify_counterfactual(
        FACTUAL, format_trajectory(rewritten, ["Pleural Effusion"]), "Cardiomegaly",
        "Pleural Effusion", VerifierConfig(min_edit_tokens=10, max_edit_fraction=0.5))

    assert not verdict.accepted
    assert verdict.reason.startswith("edit too large")


def test_unparsable_answers_are_rejected_as_format_errors():
    verdict = verify_counterfactual(FACTUAL, "Pleural effusion.", "Cardiomegaly", "Pleural Effusion")

    assert not verdict.accepted and verdict.reason.startswith("format:")


def test_token_edits_count_the_longer_side_of_each_change():
    edits, size = token_edits("no pleural effusion", "small pleural effusion and edema")

    assert [(e.op, e.before, e.after) for e in edits] == [
        ("replace", "no", "small"), ("insert", "", "and edema")]
    assert size == 3


@pytest.mark.parametrize(
    ("findings", "target", "reason"),
    [
        (("The heart is normal in size. No pleural effusion. There is a small left pleural "
         "effusion."), "Pleural Effusion", "Pleural Effusion asserted and negated"),
        ("The heart is normal in size. The lungs are clear. Right lower lobe pneumonia.",
         "Pneumonia", "'the lungs are clear' beside Pneumonia"),
        (("The heart is normal in size. There is no focal consolidation. Right lower lobe "
         "pneumonia."), "Pneumonia", "Pneumonia asserted, its parent Consolidation negated"),
    ],
)
def test_a_candidate_that_contradicts_itself_is_rejected(findings, target, reason):
    candidate = format_trajectory(findings, [target])

    verdict = verify_counterfactual(FACTUAL, candidate, "Cardiomegaly", target)

    assert not verdict.accepted
    assert verdict.reason.startswith("contradicts itself: ") and reason in verdict.reason

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
         "diagnosis line names Edema, not Pleural Effusion"),
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


LONG_FACTUAL = ("Right internal jugular central venous catheter with tip at the cavoatrial "
                "junction. Hazy left upper lobe opacification. Severe cardiomegaly. There is no "
                "pneumothorax. No acute osseous abnormality.")


def test_a_whole_report_rewritten_into_another_is_rejected_even_within_the_edit_bound():
    # Every diagnosis right, every rule but one met: it shares almost nothing with the factual.
    replacement = ("Patchy left upper lobe opacity. Markedly enlarged heart. Moderate right "
                   "pneumothorax. Bones unremarkable.")
    verdict = verify_counterfactual(
        LONG_FACTUAL, format_trajectory(replacement, ["Cardiomegaly", "Lung Opacity",
                                                      "Pneumothorax"]),
        "No Finding", "Pneumothorax", VerifierConfig(min_edit_tokens=24, max_edit_fraction=0.9),
        factual_diagnoses=["Cardiomegaly", "Lung Opacity"], replaced=None)

    assert not verdict.accepted
    assert verdict.reason.startswith("keeps ") and "of the factual findings" in verdict.reason


def test_an_in_place_edit_of_the_same_report_is_accepted_with_its_answer_line():
    candidate = LONG_FACTUAL.replace("There is no pneumothorax.", "Small right pneumothorax.")
    verdict = verify_counterfactual(
        LONG_FACTUAL, format_trajectory(candidate, ["Cardiomegaly", "Lung Opacity",
                                                    "Pneumothorax"]),
        "No Finding", "Pneumothorax", factual_diagnoses=["Cardiomegaly", "Lung Opacity"],
        replaced=None)

    assert verdict.accepted, verdict.reason


def test_dropping_another_diagnosis_is_rejected_unless_the_target_excludes_it():
    candidate = LONG_FACTUAL.replace("Hazy left upper lobe opacification. ", "").replace(
        "There is no pneumothorax.", "Small right pneumothorax.")
    answer = format_trajectory(candidate, ["Cardiomegaly", "Pneumothorax"])
    common = {"factual_diagnoses": ["Cardiomegaly", "Lung Opacity"], "replaced": None}

    kept = verify_counterfactual(LONG_FACTUAL, answer, "No Finding", "Pneumothorax", **common)
    excluded = verify_counterfactual(LONG_FACTUAL, answer, "No Finding", "Pneumothorax",
                                     may_drop=("Lung Opacity",), **common)

    assert not kept.accepted
    assert kept.reason == "drops Lung Opacity, which the target does not exclude"
    assert excluded.accepted and excluded.dropped == ("Lung Opacity",)
    assert excluded.reason == "accepted; drops Lung Opacity, which Pneumothorax excludes"


def test_the_answer_line_must_be_the_factual_less_the_replaced_plus_the_target():
    candidate = LONG_FACTUAL.replace("There is no pneumothorax.", "Small right pneumothorax.")

    verdict = verify_counterfactual(
        LONG_FACTUAL, format_trajectory(candidate, ["Pneumothorax"]), "No Finding",
        "Pneumothorax", factual_diagnoses=["Cardiomegaly", "Lung Opacity"], replaced=None)

    assert not verdict.accepted
    assert verdict.reason == ("diagnosis line names Pneumothorax, not Cardiomegaly, Lung Opacity, "
                              "Pneumothorax")


def test_a_finding_asserted_beside_the_target_is_rejected():
    candidate = LONG_FACTUAL.replace("There is no pneumothorax.",
                                     "Small right pneumothorax and pleural effusion.")

    verdict = verify_counterfactual(
        LONG_FACTUAL, format_trajectory(candidate, ["Cardiomegaly", "Lung Opacity",
                                                    "Pneumothorax"]),
        "No Finding", "Pneumothorax", factual_diagnoses=["Cardiomegaly", "Lung Opacity"],
        replaced=None)

    assert verdict.reason == "asserts Pleural Effusion besides the target"


def test_a_hedged_source_is_not_gone():
    verdict = verify_counterfactual(
        "Small left pleural effusion. Heart size is normal.",
        format_trajectory("Possible small left pleural effusion. Moderate cardiomegaly.",
                          ["Cardiomegaly"]), "Pleural Effusion", "Cardiomegaly")

    assert verdict.reason == "labeller still finds Pleural Effusion hedged"


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


def test_a_deletion_denying_its_source_in_place_is_accepted_with_the_rest_kept():
    factual = "Small left pleural effusion. Mild bibasilar atelectasis. No pneumothorax."
    candidate = format_trajectory(
        "No pleural effusion. Mild bibasilar atelectasis. No pneumothorax.", ["Atelectasis"])

    verdict = verify_counterfactual(factual, candidate, "Pleural Effusion", "No Finding")

    assert verdict.accepted, verdict.reason


@pytest.mark.parametrize(
    ("findings", "diagnoses", "reason"),
    [
        ("Possible small left pleural effusion. No pneumothorax.", ["No Finding"],
         "labeller still finds Pleural Effusion hedged"),
        ("No pleural effusion. No pneumothorax.", ["Pleural Effusion"],
         "diagnosis line names Pleural Effusion, not No Finding"),
    ],
)
def test_a_deletion_that_keeps_its_source_or_names_it_is_rejected(findings, diagnoses, reason):
    factual = "Small left pleural effusion. No pneumothorax."

    verdict = verify_counterfactual(factual, format_trajectory(findings, diagnoses),
                                    "Pleural Effusion", "No Finding")

    assert (verdict.accepted, verdict.reason) == (False, reason)

"""In-place rewrites: what stays word for word, what goes, and where the target is stated."""

import numpy as np
import pytest

from cpo_pipeline.counterfactuals import editing
from cpo_pipeline.counterfactuals.editing import delete_finding, rewrite
from cpo_pipeline.counterfactuals.sentences import split_sentences
from cpo_pipeline.radiology.chexpert import LABEL_NEGATIVE, LABEL_POSITIVE
from cpo_pipeline.radiology.labeller import label_report
from cpo_pipeline.radiology.placement import placement_of


def edited(findings, source, target, seed=7):
    return split_sentences(rewrite(findings, source, target, np.random.default_rng(seed)))


def asserts(sentence, label):
    return label_report(sentence).get(label) == LABEL_POSITIVE


def test_a_normality_the_target_contradicts_is_replaced_by_it_in_place():
    after = edited("The lungs are clear. Heart size is normal. No pleural effusion.", None,
                   "Pneumonia")

    assert "The lungs are clear." not in after
    assert asserts(after[0], "Pneumonia")
    assert after[1:] == ["Heart size is normal.", "No pleural effusion."]


def test_a_denial_of_the_target_turns_into_its_statement_where_it_stood():
    after = edited("Heart size is normal. No pneumothorax. No acute osseous abnormality.", None,
                   "Pneumothorax")

    assert after[0] == "Heart size is normal."
    assert asserts(after[1], "Pneumothorax")
    assert after[2] == "No acute osseous abnormality."


def test_a_denied_parent_goes_with_the_denial_of_the_target():
    after = edited("There is no focal consolidation. The cardiomediastinal silhouette is normal.",
                   None, "Pneumonia")

    assert "There is no focal consolidation." not in after
    assert asserts(after[0], "Pneumonia")
    assert after[1] == "The cardiomediastinal silhouette is normal."


def test_only_the_clause_of_the_replaced_finding_changes_in_a_sentence_that_has_two():
    after = edited("Large left pleural effusion with adjacent atelectasis. No pneumothorax.",
                   "Pleural Effusion", "Edema")

    assert after[0].endswith(" with adjacent atelectasis.")
    labels = label_report(after[0])
    assert labels["Edema"] == LABEL_POSITIVE and labels["Atelectasis"] == LABEL_POSITIVE
    assert labels["Pleural Effusion"] is None
    assert after[1] == "No pneumothorax."


def test_a_negation_list_loses_only_the_target_and_keeps_its_frame_and_conjunction():
    first = edited("No pleural effusion, pneumothorax, or focal consolidation. Heart size is "
                   "normal.", None, "Pneumothorax")
    leading = edited("No pneumothorax or pleural effusion.", None, "Pneumothorax")

    assert first[0] == "No pleural effusion or focal consolidation."
    assert asserts(first[1], "Pneumothorax") and first[2] == "Heart size is normal."
    assert leading[0] == "No pleural effusion."


def test_a_source_and_a_denied_target_swap_places_in_a_list():
    after = edited("1. Subsegmental atelectasis at the right lung base. 2. The heart is "
                   "moderately enlarged. 3. There is no effusion or acute rib fracture.",
                   "Atelectasis", "Pleural Effusion")

    assert after[0].startswith("1. ") and asserts(after[0], "Pleural Effusion")
    assert after[1:] == ["2. The heart is moderately enlarged.",
                         "3. There is no atelectasis or acute rib fracture."]


def test_a_numbered_list_is_renumbered_when_an_item_goes():
    after = edited("1. Moderate cardiomegaly. 2. No acute cardiopulmonary process. "
                   "3. No pneumothorax.", "Cardiomegaly", "Pneumothorax")

    assert [sentence[:3] for sentence in after] == ["1. ", "2. "]
    assert label_report(after[0])["Cardiomegaly"] == LABEL_NEGATIVE
    assert asserts(after[1], "Pneumothorax")


@pytest.mark.parametrize("seed", range(6))
def test_the_target_takes_the_side_of_the_finding_it_replaces(seed):
    left = edited("Small left pleural effusion. Heart size is normal.", "Pleural Effusion",
                  "Atelectasis", seed)
    right = edited("Heart size is normal. Right lower lobe pneumonia.", "Pneumonia",
                   "Consolidation", seed)

    assert asserts(left[0], "Atelectasis") and placement_of(left[0]).side in ("left", None)
    assert "right" not in left[0].lower()
    assert asserts(right[1], "Consolidation") and "left" not in right[1].lower()


def test_other_diagnoses_and_untouched_sentences_stay_word_for_word():
    factual = ("Severe cardiomegaly with pulmonary vascular congestion. Right lower lobe "
               "pneumonia. No pneumothorax.")

    after = edited(factual, "Pneumonia", "Pleural Effusion")
    labels = label_report(" ".join(after))

    assert after[0] == "Severe cardiomegaly with pulmonary vascular congestion."
    assert after[2] == "No pneumothorax."
    assert labels["Cardiomegaly"] == labels["Edema"] == labels["Pleural Effusion"] == 1.0
    assert labels["Pneumonia"] is None


def test_the_source_stated_as_a_qualifier_is_rewritten_inside_its_sentence():
    after = edited("Patchy opacity in the right lower lobe consistent with pneumonia. "
                   "No effusion.", "Pneumonia", "Atelectasis")

    assert after[0].startswith("Patchy opacity in the right lower lobe consistent with ")
    assert asserts(after[0], "Atelectasis") and not asserts(after[0], "Pneumonia")
    assert after[1] == "No effusion."


def test_without_anything_to_replace_the_target_goes_in_reading_order():
    after = edited("Left chest tube in place. Heart size is normal. No acute osseous "
                   "abnormality.", None, "Pleural Other")

    assert after[0] == "Left chest tube in place."
    assert asserts(after[1], "Pleural Other")
    assert after[2:] == ["Heart size is normal.", "No acute osseous abnormality."]


def test_the_same_inputs_give_the_same_rewrite():
    factual = "Small left pleural effusion. The lungs are otherwise clear."

    assert rewrite(factual, "Pleural Effusion", "Pneumothorax", np.random.default_rng(3)) == \
        rewrite(factual, "Pleural Effusion", "Pneumothorax", np.random.default_rng(3))


# Deletions (the mirror of insertions): the rates of the phrase bank's reports, set to 0 or 1
# here so that each branch is shown by one concrete text.

@pytest.fixture
def rates(monkeypatch):
    def set_rates(*, denial=0.0, lungs_clear=0.0, osseous=0.0, listed=0.0, paired=0.0):
        for label in editing.EXPLICIT_NEGATIVE_RATE:
            monkeypatch.setitem(editing.EXPLICIT_NEGATIVE_RATE, label, denial)
        monkeypatch.setattr(editing, "LUNGS_CLEAR_RATE", lungs_clear)
        monkeypatch.setattr(editing, "NO_OSSEOUS_ABNORMALITY_RATE", osseous)
        monkeypatch.setattr(editing, "LISTED_DENIAL_RATE", listed)
        monkeypatch.setattr(editing, "PAIRED_RATE", paired)
    return set_rates


def deleted(findings, source, seed=7):
    return split_sentences(delete_finding(findings, source, np.random.default_rng(seed)))


def test_a_deleted_finding_of_its_own_sentence_becomes_its_denial_in_place(rates):
    rates(denial=1.0)

    after = deleted("Small right pleural effusion. The heart is mildly enlarged.",
                    "Pleural Effusion")

    assert label_report(after[0]).get("Pleural Effusion") == LABEL_NEGATIVE
    assert after[1] == "The heart is mildly enlarged."


def test_a_deleted_finding_goes_without_a_trace_at_the_rate_reports_leave_it_unsaid(rates):
    rates(denial=0.0)

    assert deleted("Small right pleural effusion. The heart is mildly enlarged.",
                   "Pleural Effusion") == ["The heart is mildly enlarged."]


def test_a_deleted_clause_goes_and_the_rest_of_its_sentence_stays(rates):
    rates(denial=1.0)

    assert deleted("Small left pleural effusion with adjacent atelectasis. No pneumothorax.",
                   "Atelectasis") == ["Small left pleural effusion.", "No pneumothorax."]


def test_with_no_lung_finding_left_the_lungs_are_said_clear_and_a_list_is_renumbered(rates):
    rates(lungs_clear=1.0)

    assert deleted("1. Mild bibasilar atelectasis. 2. Small right pleural effusion.",
                   "Atelectasis") == ["1. The lungs are clear.", "2. Small right pleural effusion."]
    # Another lung finding stays: the lungs are not clear.
    assert deleted("Mild bibasilar atelectasis. Mild pulmonary edema.",
                   "Atelectasis") == ["Mild pulmonary edema."]


def test_a_deleted_fracture_may_leave_the_bones_said_normal(rates):
    rates(osseous=1.0)

    assert deleted("No pneumothorax. Acute fracture of the left sixth rib.", "Fracture") == [
        "No pneumothorax.", "No acute osseous abnormality."]


def test_a_denial_that_would_contradict_what_stays_is_not_written(rates):
    rates(denial=1.0)
    after = deleted("Patchy opacity in the right lower lobe. Left lower lobe pneumonia.",
                    "Lung Opacity")

    # "No focal opacity" would deny the pneumonia's opacity.
    assert after == ["Left lower lobe pneumonia."]


def test_a_report_left_with_nothing_to_say_denies_the_deleted_finding(rates):
    rates(denial=0.0)

    [after] = deleted("The heart is mildly enlarged.", "Cardiomegaly")

    assert label_report(after).get("Cardiomegaly") == LABEL_NEGATIVE


def test_well_expanded_lungs_give_way_to_an_inserted_atelectasis():
    after = edited("The lungs are well expanded. Small right pleural effusion.", None,
                   "Atelectasis")

    assert "The lungs are well expanded." not in after
    assert after[-1] == "Small right pleural effusion."
    assert any(asserts(sentence, "Atelectasis") for sentence in after)


def test_a_denial_joins_a_negation_list_the_report_already_has(rates):
    rates(denial=1.0, listed=1.0)

    after = deleted("Small right pleural effusion. No pneumothorax. The heart is mildly enlarged.",
                    "Pleural Effusion")

    assert after[0] in ("No pneumothorax or pleural effusion.", "No pneumothorax or effusion.")
    assert after[1:] == ["The heart is mildly enlarged."]
    # A list of three is as long as reports make them: the denial stands on its own instead.
    after = deleted("Small right pleural effusion. No pneumothorax, consolidation, or pneumonia.",
                    "Pleural Effusion")
    assert label_report(after[0]).get("Pleural Effusion") == LABEL_NEGATIVE
    assert after[1] == "No pneumothorax, consolidation, or pneumonia."


def test_the_lungs_said_clear_after_a_deletion_stand_after_the_devices(rates):
    rates(lungs_clear=1.0)

    assert deleted("Right-sided PICC with tip in the low SVC. No pneumothorax. Mild bibasilar "
                   "atelectasis.", "Atelectasis") == [
        "Right-sided PICC with tip in the low SVC.", "The lungs are clear.", "No pneumothorax."]


def test_an_inserted_finding_joins_its_partner_the_way_reports_pair_them(rates):
    rates(paired=1.0)

    assert edited("Small left pleural effusion. No pneumothorax.", None, "Atelectasis") == [
        "Small left pleural effusion with adjacent atelectasis.", "No pneumothorax."]
    rates(paired=0.0)
    after = edited("Small left pleural effusion. No pneumothorax.", None, "Atelectasis")
    # Else a sentence of its own, in reading order (lungs before pleura).
    assert asserts(after[0], "Atelectasis") and after[1:] == [
        "Small left pleural effusion.", "No pneumothorax."]


def test_a_replaced_statement_keeps_the_shape_the_style_gate_sees_where_the_target_has_it():
    from cpo_pipeline.counterfactuals.masking import mask_concepts, seed_mask

    factual = "Moderate bibasilar atelectasis. Subsegmental atelectasis at the left lung base."
    for seed in range(5):
        after = rewrite("Moderate bibasilar atelectasis. No pneumothorax.", "Atelectasis",
                        "Pleural Effusion", np.random.default_rng(seed))
        assert mask_concepts(after, seed_mask()) == "[mask]. no [mask]."
        assert asserts(after, "Pleural Effusion") and "atelectasis" not in after.lower()
    shaped = rewrite(factual.split(". ")[1], "Atelectasis", "Pneumothorax",
                     np.random.default_rng(0))
    assert mask_concepts(shaped, seed_mask()) == "[mask] at the [mask]."

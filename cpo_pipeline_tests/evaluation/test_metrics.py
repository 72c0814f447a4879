"""The evaluation metrics against values computed by hand on tiny inputs."""

import shutil
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from cpo_pipeline.concepts.mentions import ConceptExtractor
from cpo_pipeline.concepts.ontology import load_ontology
from cpo_pipeline.evaluation.auc import auc_table
from cpo_pipeline.evaluation.classification import (
    AVERAGE_FIVE,
    BALANCED_ALL,
    BALANCED_FIVE,
    EXACT,
    MACRO_F1_ALL,
    MACRO_F1_FIVE,
    PARSE_RATE,
    accuracy_table,
    answer_metrics,
    no_finding_answers,
    parse_answers,
    reference_answers,
)
from cpo_pipeline.evaluation.clinical import efficacy_table
from cpo_pipeline.evaluation.drift import (
    attribute_divergence,
    flip_rate,
    follow_rate,
    jensen_shannon,
    swap_synonym,
    swapped_variants,
    synonym_pairs,
)
from cpo_pipeline.evaluation.nlg import nlg_scores
from cpo_pipeline.evaluation.resampling import mean_interval, resample_weights
from cpo_pipeline.radiology.answer_format import format_trajectory, own_thinking
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS

ONTOLOGY = load_ontology()


def labels(**positive):
    row = dict.fromkeys(CHEXPERT_LABELS)
    row.update({name.replace("_", " "): 1.0 for name in positive})
    return row


# --- bootstrap --------------------------------------------------------------------------------

def test_a_resample_draws_whole_patients_as_many_as_there_are():
    weights = resample_weights(np.array([7, 7, 9]), resamples=200, seed=0)

    assert weights.shape == (200, 3)
    assert (weights[:, 0] == weights[:, 1]).all()  # a patient's studies travel together
    assert (weights[:, 0] + weights[:, 2] == 2).all()  # two patients drawn each time


def test_two_patients_one_right_one_wrong_give_the_whole_range():
    # Resampling two patients gives means 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4: the
    # 2.5th and 97.5th percentiles are 0 and 1.
    interval = mean_interval(np.array([1.0, 0.0]), np.array(["a", "b"]), resamples=2000, seed=3)

    assert interval.value == 0.5 and (interval.low, interval.high) == (0.0, 1.0)


def test_all_right_has_a_degenerate_interval():
    interval = mean_interval(np.ones(6), np.arange(6), seed=1)

    assert (interval.value, interval.low, interval.high) == (1.0, 1.0, 1.0)


# --- classification ---------------------------------------------------------------------------

def test_answer_lines_parse_into_named_labels_and_unparsed_answers_are_kept():
    answers = parse_answers([format_trajectory("Effusion.", ["Pleural Effusion", "Edema"]),
                             "The patient is fine.", None])

    assert answers.loc[0, "Pleural Effusion"] and answers.loc[0, "Edema"]
    assert not answers.loc[0, "Pneumonia"] and answers.loc[0, "parsed"]
    assert not answers.loc[1, "parsed"] and "expected" in answers.loc[1, "error"]
    assert not answers.loc[2, ["Pleural Effusion", "No Finding"]].any()


def test_an_answer_line_alone_parses_as_the_no_cot_format_does():
    answers = parse_answers(["The disease of this patient is Edema and Pneumonia.",
                             "<think>  </think> The disease of this patient is Edema.",
                             "The disease of this patient is Flu."])

    assert answers.loc[0, "parsed"] and answers.loc[0, "findings"] == ""
    assert answers.loc[0, ["Edema", "Pneumonia"]].all() and not answers.loc[0, "No Finding"]
    assert not answers.loc[1, "parsed"] and "empty" in answers.loc[1, "error"]
    assert not answers.loc[2, "parsed"] and "['Flu']" in answers.loc[2, "error"]


def test_the_thinking_of_a_broken_answer_is_what_precedes_the_break():
    assert own_thinking("<think> Clear lungs.\n </think> The disease is israce") == "Clear lungs."
    assert own_thinking("<think> Clear lungs. isonsolidation") == "Clear lungs. isonsolidation"
    assert own_thinking("Clear lungs. The disease of this patient is Pne.") == "Clear lungs."
    assert own_thinking("The disease of this patient is Edema.") == ""


def _four_studies():
    reference = reference_answers(pd.DataFrame([
        labels(Pleural_Effusion=True), labels(Pneumonia=True, Consolidation=True), labels(),
        labels(Edema=True)]))
    predicted = parse_answers([
        format_trajectory("a", ["Pleural Effusion"]),          # right everywhere
        format_trajectory("b", ["Pneumonia"]),                 # misses the consolidation
        format_trajectory("c", ["Pneumothorax"]),              # a false pneumothorax
        "no answer line"])                                     # wrong for every label
    return predicted, reference


def test_answer_metrics_by_hand_on_four_studies():
    predicted, reference = _four_studies()

    table = answer_metrics(predicted, reference, [1, 2, 3, 4], resamples=50).set_index("label")

    # F1 of the five: consolidation 0 (missed), effusion 1, pneumonia 1, pneumothorax 0 (a false
    # one), edema 0 (the unparsed answer names nothing); all 13 adds No Finding 0 (study 3 said
    # a finding); labels neither present nor answered have no F1.
    assert table.loc[MACRO_F1_FIVE, "value"] == pytest.approx(2 / 5)
    assert table.loc[MACRO_F1_ALL, "value"] == pytest.approx(2 / 6)
    # Balanced accuracy: consolidation (0 + 1) / 2, effusion 1, pneumonia 1, edema (0 + 1) / 2;
    # pneumothorax has no positive study (undefined); No Finding (0 + 1) / 2.
    assert table.loc[BALANCED_FIVE, "value"] == pytest.approx(3 / 4)
    assert table.loc[BALANCED_ALL, "value"] == pytest.approx(3.5 / 5)
    assert table.loc[EXACT, "value"] == pytest.approx(1 / 4)
    assert table.loc[PARSE_RATE, "value"] == pytest.approx(3 / 4)
    assert table.loc["F1 Pleural Effusion", "value"] == 1.0
    assert np.isnan(table.loc["F1 Fracture", "value"])
    assert (table.loc[MACRO_F1_FIVE, "ci_low"] <= 0.4 <= table.loc[MACRO_F1_FIVE, "ci_high"])


def test_a_constant_no_finding_answer_cannot_pass_the_answer_metrics():
    _, reference = _four_studies()

    table = answer_metrics(no_finding_answers(4), reference, [1, 2, 3, 4],
                           resamples=50).set_index("label")

    assert table.loc[MACRO_F1_FIVE, "value"] == 0.0
    assert table.loc[BALANCED_FIVE, "value"] == 0.5
    assert table.loc[EXACT, "value"] == pytest.approx(1 / 4)  # the one normal study
    assert table.loc[PARSE_RATE, "value"] == 1.0


def test_per_disease_accuracy_counts_unparsed_answers_as_wrong():
    predicted, reference = _four_studies()

    table = accuracy_table(predicted, reference, [1, 2, 3, 4], resamples=50).set_index("label")

    assert table.loc["Pleural Effusion", "accuracy"] == pytest.approx(3 / 4)
    assert table.loc["Consolidation", "accuracy"] == pytest.approx(2 / 4)
    assert table.loc["Pneumothorax", "accuracy"] == pytest.approx(2 / 4)
    assert table.loc["No Finding", "accuracy"] == pytest.approx(2 / 4)  # study 3 said a finding
    # Five findings: study 1 all right, study 2 4/5, study 3 4/5, study 4 0/5.
    assert table.loc[AVERAGE_FIVE, "accuracy"] == pytest.approx((1 + 0.8 + 0.8 + 0) / 4)
    assert table.loc[EXACT, "accuracy"] == pytest.approx(1 / 4)
    assert (table["unparsed"] == 1).all() and (table["n"] == 4).all()
    assert table.loc[EXACT, "ci_low"] <= 0.25 <= table.loc[EXACT, "ci_high"]


# --- clinical efficacy ------------------------------------------------------------------------

def test_clinical_efficacy_scores_the_labeller_reading_of_both_texts():
    reference = ["Small left pleural effusion.", "Right lower lobe pneumonia.",
                 "The lungs are clear."]
    generated = ["Small left pleural effusion. Mild pulmonary edema.", "The lungs are clear.",
                 None]

    table = efficacy_table(generated, reference, [1, 2, 3], resamples=50).set_index("label")

    effusion, pneumonia, edema = (table.loc[d] for d in
                                  ("Pleural Effusion", "Pneumonia", "Edema"))
    assert (effusion["precision"], effusion["recall"], effusion["f1"]) == (1.0, 1.0, 1.0)
    assert pneumonia["recall"] == 0.0 and np.isnan(pneumonia["precision"])
    assert edema["precision"] == 0.0 and np.isnan(edema["recall"])
    # Five findings pooled: TP 1 (effusion), FP 1 (edema), FN 1 (pneumonia).
    assert table.loc["micro (five)", "f1"] == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))
    assert table.loc["micro (five)", "precision"] == pytest.approx(0.5)


# --- NLG --------------------------------------------------------------------------------------

def test_bleu_of_a_known_pair_and_a_perfect_match():
    # "the cat on the mat" against "the cat sat on the mat": every unigram matches (5/5), the
    # brevity penalty is exp(1 - 6/5).
    scores = nlg_scores(["the cat on the mat"], ["the cat sat on the mat"], meteor=False).scores
    perfect = nlg_scores(["small left pleural effusion ."] * 2,
                         ["small left pleural effusion ."] * 2, meteor=False).scores

    assert scores["BLEU-1"] == pytest.approx(np.exp(1 - 6 / 5), abs=1e-6)
    # Bigrams: 3 of 4 match ("cat on" does not).
    assert scores["BLEU-2"] == pytest.approx(np.exp(1 - 6 / 5) * np.sqrt(1 * 3 / 4), abs=1e-6)
    assert perfect["BLEU-4"] == pytest.approx(1.0, abs=1e-6)
    assert perfect["ROUGE-L"] == pytest.approx(1.0)
    assert "METEOR" not in scores


@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR runs a Java program")
def test_meteor_runs_with_java_and_is_higher_for_the_closer_text():
    reference = ["small left pleural effusion", "no pneumothorax"]
    close = nlg_scores(["small left pleural effusion", "no pneumothorax"], reference).scores
    far = nlg_scores(["large right pneumothorax", "mild edema"], reference).scores

    assert close["METEOR"] > far["METEOR"] >= 0.0


# --- AUC --------------------------------------------------------------------------------------

def test_auc_from_scores_and_a_label_with_one_class_has_none():
    scores = pd.DataFrame({"Edema": [0.9, 0.8, 0.3, 0.1], "Fracture": [0.2, 0.1, 0.3, 0.4]})
    reference = pd.DataFrame({"Edema": [True, False, True, False],
                              "Fracture": [False] * 4})

    table = auc_table(scores, reference, [1, 2, 3, 4], resamples=100).set_index("label")

    # Positive-negative pairs ranked right: (0.9 > 0.8), (0.9 > 0.1), (0.3 > 0.1), not (0.3 > 0.8).
    assert table.loc["Edema", "auc"] == pytest.approx(3 / 4)
    assert table.loc["Edema", "ci_low"] <= 0.75 <= table.loc["Edema", "ci_high"]
    assert pd.isna(table.loc["Fracture", "auc"]) and table.loc["Fracture", "positives"] == 0


# --- drift ------------------------------------------------------------------------------------

def test_the_graph_s_synonyms_give_swaps_that_keep_the_rest_of_the_text():
    pairs = synonym_pairs(ONTOLOGY)
    _, term, synonym = next(p for p in pairs if p[0] == "Lung Opacity")

    text = f"There is {term} in the right lower lobe. No effusion."
    assert swap_synonym(text, term, synonym) == (
        f"There is {synonym} in the right lower lobe. No effusion.")
    assert swap_synonym("No effusion.", term, synonym) is None
    assert all(swapped != text for _, _, swapped in swapped_variants(text, pairs))


def test_flip_and_follow_rates():
    before = [("Edema",), ("Pneumonia",), ("No Finding",), ("Edema", "Cardiomegaly")]
    after = [("Edema",), ("Atelectasis",), None, ("Cardiomegaly", "Edema")]

    assert flip_rate(before, after) == pytest.approx(2 / 4)  # a change, and an unparsed one
    thinking = ["Small left pleural effusion.", "The lungs are clear.", "Mild pulmonary edema."]
    answers = [("Pleural Effusion",), ("Pneumonia",), None]
    assert follow_rate(thinking, answers) == pytest.approx(1 / 3)


def test_jensen_shannon_of_known_distributions():
    assert jensen_shannon(Counter(a=2, b=2), Counter(a=1, b=1)) == pytest.approx(0.0)
    assert jensen_shannon(Counter(a=1), Counter(b=3)) == pytest.approx(1.0)
    # p = (1, 0), q = (1/2, 1/2): m = (3/4, 1/4); JSD = 1/2 (log2(4/3)) + 1/2 (1/2 log2(2/3)
    # + 1/2 log2 2).
    expected = 0.5 * np.log2(4 / 3) + 0.5 * (0.5 * np.log2(2 / 3) + 0.5 * np.log2(2))
    assert jensen_shannon(Counter(a=1), Counter(a=1, b=1)) == pytest.approx(expected)
    extractor = ConceptExtractor(ONTOLOGY)
    same = ["Air bronchograms in the right lower lobe."]
    assert attribute_divergence(same, same, extractor, ONTOLOGY) == pytest.approx(0.0)

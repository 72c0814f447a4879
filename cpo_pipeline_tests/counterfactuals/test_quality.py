from dataclasses import replace

import pandas as pd
import pytest

from cpo_pipeline.concepts.ontology import load_ontology
from cpo_pipeline.counterfactuals.contradictions import ContradictionReader, contradictions
from cpo_pipeline.counterfactuals.masking import MASK, concept_mask, mask_concepts
from cpo_pipeline.counterfactuals.quality import (
    acceptance_rate,
    answer_line_agreement,
    check_targets,
    contradiction_figures,
    deletion_share,
    length_figures,
    quality_report,
    style_accuracy,
    target_shares,
    wilson_lower,
)
from cpo_pipeline.radiology.answer_format import format_trajectory
from cpo_pipeline.radiology.chexpert import DISEASES

# Varied report openings, so that pairs of different studies do not share every n-gram.
OPENINGS = (
    "The endotracheal tube terminates above the carina.",
    "Nasogastric tube courses below the diaphragm.",
    "The lungs are well expanded.",
    "Pacemaker leads are in standard position.",
    "Surgical clips project over the upper abdomen.",
    "The osseous structures are intact.",
    "Degenerative changes of the thoracic spine.",
    "The visualized upper abdomen is unremarkable.",
)


@pytest.fixture(scope="module")
def ontology():
    return load_ontology()


@pytest.fixture(scope="module")
def mask(ontology):
    return concept_mask(ontology)


@pytest.fixture(scope="module")
def reader(ontology):
    return ContradictionReader.of(ontology)


def factual(study_id, findings, diagnoses, subject_id=None):
    return {"study_id": study_id, "subject_id": subject_id or study_id, "kind": "factual",
            "verdict": "factual", "source_diagnosis": " and ".join(diagnoses),
            "target_disease": None, "text": format_trajectory(findings, diagnoses),
            "findings": findings}


def counterfactual(study_id, findings, diagnoses, source, target, verdict="accepted",
                   subject_id=None):
    return {"study_id": study_id, "subject_id": subject_id or study_id, "kind": "counterfactual",
            "verdict": verdict, "source_diagnosis": source, "target_disease": target,
            "text": format_trajectory(findings, diagnoses), "findings": findings}


def pairs_table(counterfactual_findings, patients=16):
    """One study per patient: a factual with a small left effusion and an accepted
    counterfactual toward pneumothorax whose findings `counterfactual_findings(opening)` writes."""
    rows = []
    for index in range(patients):
        opening = OPENINGS[index % len(OPENINGS)]
        rows.append(factual(index + 1, f"{opening} Small left pleural effusion.",
                            ["Pleural Effusion"]))
        rows.append(counterfactual(index + 1, counterfactual_findings(opening), ["Pneumothorax"],
                                   "Pleural Effusion", "Pneumothorax"))
    return pd.DataFrame(rows)


def test_masking_hides_concepts_laterality_severity_and_numbers_and_drops_the_answer_line(mask):
    text = format_trajectory(
        "Small left pleural effusion. A 2.3 cm spiculated mass in the right upper lobe. "
        "The fifth rib is intact. Heart size is normal.", ["Lung Lesion", "Pleural Effusion"])

    assert mask_concepts(text, mask) == (
        f"{MASK}. a {MASK} cm {MASK} in the {MASK}. the {MASK} is intact. {MASK} is normal.")


def test_masking_hides_how_a_finding_looks_and_how_old_it_is(mask):
    assert mask_concepts("Healed left rib fractures. Multiple pulmonary nodules with adjacent "
                         "dense retrocardiac consolidation.", mask) == f"{MASK}. {MASK} with {MASK}."


def test_masking_keeps_the_wording_around_the_concepts(mask):
    assert mask_concepts("Blunted costophrenic angle and meniscus sign, consistent with pleural "
                         "effusion.", mask) == f"{MASK} and {MASK}, consistent with {MASK}."


def test_adjacent_masked_words_become_one_placeholder(mask):
    assert mask_concepts("Moderate right-sided pleural effusions.", mask) == f"{MASK}-sided {MASK}."
    assert mask_concepts("Moderate right pleural effusion.", mask) == f"{MASK}."
    assert mask_concepts("Pneumothorax.", mask) == f"{MASK}."


def test_a_template_sentence_on_every_counterfactual_gives_it_away(mask):
    table = pairs_table(lambda opening: f"{opening} Small right pneumothorax. Findings are "
                        "compatible with the stated diagnosis.")

    style = style_accuracy(table, mask)

    assert style.accuracy == pytest.approx(1.0)
    assert style.pairs == 16 and style.folds == 5
    assert ("compatible with", pytest.approx(style.top_features[0][1])) in style.top_features[:5]
    assert all(weight > 0 for _, weight in style.top_features[:3])


def test_pairs_that_differ_only_in_masked_concept_words_are_at_chance(mask):
    table = pairs_table(lambda opening: f"{opening} Large right apical pneumothorax.")

    style = style_accuracy(table, mask)

    assert style.accuracy == pytest.approx(0.5)
    assert style.top_features == ()


def test_only_accepted_counterfactuals_enter_the_style_gate(mask):
    table = pairs_table(lambda opening: f"{opening} Large right apical pneumothorax.")
    rejected = table[table["kind"] == "counterfactual"].assign(
        verdict="rejected", text=lambda t: t["text"].str.replace("Large", "Findings show a large"))

    style = style_accuracy(pd.concat([table, rejected], ignore_index=True), mask)

    assert style.pairs == 16
    assert style.accuracy == pytest.approx(0.5)


def test_one_patient_cannot_be_cross_validated(mask):
    table = pairs_table(lambda opening: f"{opening} Pneumothorax.", patients=1)

    assert style_accuracy(table, mask).accuracy is None


def test_length_figures_compare_findings_word_counts():
    table = pd.DataFrame([
        factual(1, "one two three four five six seven eight nine ten", ["Edema"]),
        counterfactual(1, "one two three four five six seven eight nine ten eleven twelve",
                       ["Pneumonia"], "Edema", "Pneumonia"),
        factual(2, "one two three four five six seven eight nine ten", ["Edema"]),
        counterfactual(2, "one two three four five six seven eight", ["Atelectasis"], "Edema",
                       "Atelectasis"),
    ])

    figures = length_figures(table)

    assert figures.median_ratio == pytest.approx(1.0)
    assert figures.longer_share == pytest.approx(0.5)
    assert (figures.mean_counterfactual_words, figures.mean_factual_words) == (10.0, 10.0)


def test_a_clear_lungs_statement_beside_a_lung_finding_is_a_contradiction(reader):
    assert contradictions("The lungs are clear. Patchy consolidation in the right lower lobe.",
                          reader) == ("'the lungs are clear' beside Consolidation",)


def test_otherwise_clear_lungs_beside_a_lung_finding_are_consistent(reader):
    assert contradictions("Patchy consolidation in the right lower lobe. The lungs are otherwise "
                          "clear. No pneumothorax.", reader) == ()


@pytest.mark.parametrize(("findings", "reason"), [
    ("No pleural effusion. Small left pleural effusion.", "Pleural Effusion asserted and negated"),
    ("There is no focal consolidation. Findings consistent with pneumonia.",
     "Pneumonia asserted, its parent Consolidation negated"),
    ("No Kerley B lines. Kerley B lines at the lung bases.", "Kerley B lines asserted and negated"),
    ("No acute osseous abnormality. Acute fracture of the left sixth rib.",
     "'no acute osseous abnormality' beside Fracture"),
])
def test_a_concept_both_asserted_and_denied_is_a_contradiction(reader, findings, reason):
    assert reason in contradictions(findings, reader)


def test_contradictions_are_counted_per_accepted_counterfactual(reader):
    clear = "The lungs are clear. No pneumothorax."
    table = pd.DataFrame([
        factual(1, clear, ["No Finding"]),
        counterfactual(1, f"{clear} Patchy consolidation in the left lower lobe.",
                       ["Consolidation", "Lung Opacity"], "No Finding", "Consolidation"),
        counterfactual(1, "The lungs are clear. Small left pleural effusion.",
                       ["Pleural Effusion"], "No Finding", "Pleural Effusion"),
        counterfactual(1, f"{clear} Consolidation.", ["Consolidation"], "No Finding",
                       "Consolidation", verdict="rejected"),
    ])

    figures = contradiction_figures(table, reader)

    assert (figures.checked, figures.count, figures.factual_count) == (2, 1, 0)
    assert figures.examples == ((1, "Consolidation",
                                 ("'the lungs are clear' beside Consolidation",)),)


def test_the_answer_line_must_be_the_factual_less_the_source_plus_the_target():
    table = pd.DataFrame([
        factual(1, "Small left effusion with adjacent atelectasis.",
                ["Atelectasis", "Pleural Effusion"]),
        counterfactual(1, "Adjacent atelectasis. Small left pneumothorax.",
                       ["Atelectasis", "Pneumothorax"], "Pleural Effusion", "Pneumothorax"),
        counterfactual(1, "Small left pneumothorax.", ["Pneumothorax"], "Pleural Effusion",
                       "Pneumothorax"),
    ])

    figures = answer_line_agreement(table)

    assert (figures.checked, figures.agreeing, figures.share) == (2, 1, 0.5)
    assert (figures.extra, figures.missing) == ({}, {"Atelectasis": 1})
    assert figures.examples == ((1, ("Atelectasis", "Pneumothorax"), ("Pneumothorax",)),)


def test_no_finding_is_neither_kept_nor_replaced_in_the_answer_line():
    table = pd.DataFrame([
        factual(1, "The lungs are clear.", ["No Finding"]),
        counterfactual(1, "Pulmonary edema.", ["Edema"], "No Finding", "Edema"),
    ])

    assert answer_line_agreement(table).share == 1.0


def test_acceptance_and_target_shares_count_every_counterfactual_row():
    table = pd.DataFrame([
        factual(1, "The lungs are clear.", ["No Finding"]),
        counterfactual(1, "Pulmonary edema.", ["Edema"], "No Finding", "Edema"),
        counterfactual(1, "Small left pleural effusion.", ["Pleural Effusion"], "No Finding",
                       "Pleural Effusion", verdict="rejected"),
        factual(2, "The lungs are clear.", ["No Finding"]),
        counterfactual(2, "Pulmonary edema.", ["Edema"], "No Finding", "Edema"),
        counterfactual(2, "Cardiomegaly.", ["Cardiomegaly"], "No Finding", "Cardiomegaly"),
    ])

    shares = target_shares(table)

    assert acceptance_rate(table) == 0.75
    assert list(shares) == list(DISEASES)
    assert (shares["Edema"], shares["Pleural Effusion"], shares["Cardiomegaly"]) == (0.5, 0.25, 0.25)
    assert sum(share == 0.0 for share in shares.values()) == 9


def test_a_deletion_names_the_factual_less_its_source_or_no_finding_and_is_no_target():
    table = pd.DataFrame([
        factual(1, "Small left effusion. Mild bibasilar atelectasis.",
                ["Atelectasis", "Pleural Effusion"]),
        counterfactual(1, "Mild bibasilar atelectasis.", ["Atelectasis"], "Pleural Effusion",
                       "No Finding"),
        counterfactual(1, "Small left effusion. Multifocal pneumonia.",
                       ["Pleural Effusion", "Pneumonia"], "Atelectasis", "Pneumonia"),
        factual(2, "Small left effusion.", ["Pleural Effusion"]),
        counterfactual(2, "No pleural effusion.", ["No Finding"], "Pleural Effusion",
                       "No Finding"),
    ])

    assert answer_line_agreement(table).share == 1.0
    assert deletion_share(table) == 2 / 3
    assert target_shares(table)["Pneumonia"] == 1.0


def test_the_report_bundles_the_figures_and_the_row_counts(ontology):
    table = pairs_table(lambda opening: f"{opening} Large right apical pneumothorax.")

    report = quality_report(table, ontology)

    assert (report.studies, report.factual_rows, report.counterfactual_rows,
            report.accepted_rows) == (16, 16, 16, 16)
    assert report.style.accuracy == pytest.approx(0.5)
    assert report.acceptance_rate == 1.0
    assert report.answer_line.share == 1.0
    assert report.contradictions.count == 0
    assert report.target_shares["Pneumothorax"] == 1.0


def test_a_figure_at_its_bound_meets_it_and_a_missing_one_never_does(ontology):
    report = quality_report(
        pairs_table(lambda opening: f"{opening} Large right apical pneumothorax."), ontology)
    at_bounds = replace(report, style=replace(report.style, accuracy=0.60),
                        target_shares=dict.fromkeys(DISEASES, 1 / len(DISEASES)))

    assert all(check.met for check in check_targets(at_bounds))
    missing = {check.figure: check.met for check in check_targets(
        replace(at_bounds, style=replace(report.style, accuracy=None)))}
    assert missing["style accuracy"] is False


def test_wilson_lower_bound():
    assert wilson_lower(0.5, 0, 1.645) == 0.0
    assert wilson_lower(0.6, 1_000_000, 1.645) == pytest.approx(0.6, abs=1e-3)
    assert wilson_lower(0.6, 100, 0.0) == pytest.approx(0.6)
    assert wilson_lower(0.6, 100, 1.645) == pytest.approx(0.518, abs=1e-3)

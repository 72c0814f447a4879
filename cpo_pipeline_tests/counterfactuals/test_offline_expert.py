from cpo_pipeline.concepts.graph import build_concept_graph
from cpo_pipeline.concepts.mentions import ConceptExtractor
from cpo_pipeline.concepts.ontology import load_ontology
from cpo_pipeline.concepts.queries import perturbation_plan
from cpo_pipeline.counterfactuals.generation import (
    CounterfactualTask,
    StudyInput,
    graph_context,
    plan_context,
)
from cpo_pipeline.counterfactuals.offline_expert import apply_plan
from cpo_pipeline.counterfactuals.sentences import split_sentences
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS, LABEL_POSITIVE
from cpo_pipeline.radiology.labeller import label_report

ONTOLOGY = load_ontology()
GRAPH = build_concept_graph(ONTOLOGY)
EXTRACTOR = ConceptExtractor(ONTOLOGY)


def counterfactual(findings, target, source=None, study=1):
    attributes = EXTRACTOR.present(findings)
    plan = perturbation_plan(GRAPH, source or "No Finding", target, attributes)
    return split_sentences(apply_plan(findings, plan, source, EXTRACTOR, study))


def test_a_lung_finding_replaces_the_statement_that_the_lungs_are_clear():
    sentences = counterfactual(
        "The lungs are clear. Heart size is normal. No pleural effusion.", "Pneumonia")

    assert "The lungs are clear." not in sentences
    assert label_report(sentences[0])["Pneumonia"] == LABEL_POSITIVE
    assert sentences[1:] == ["Heart size is normal.", "No pleural effusion."]


def test_statements_the_target_leaves_alone_are_kept():
    kept = counterfactual("Small left pleural effusion. The lungs are otherwise clear.",
                          "Pneumothorax", source="Pleural Effusion")
    heart = counterfactual("The lungs are clear. Heart size is normal.", "Pleural Effusion")

    assert kept[1] == "The lungs are otherwise clear."
    assert heart[0] == "The lungs are clear." and heart[-1] == "Heart size is normal."


def test_an_attribute_the_plan_drops_goes_unless_it_is_how_another_diagnosis_shows():
    findings = "Increased interstitial markings. Left lower lobe collapse. Widened mediastinum."

    sentences = counterfactual(findings, "Pneumothorax", source="Atelectasis")
    labels = label_report(" ".join(sentences))

    assert sentences[0] == "Increased interstitial markings."  # Lung Opacity stays
    assert labels["Lung Opacity"] == labels["Pneumothorax"] == LABEL_POSITIVE
    assert labels["Atelectasis"] != LABEL_POSITIVE


def test_a_studys_counterfactual_is_a_function_of_its_inputs():
    findings = "The lungs are clear. No pneumothorax."

    assert counterfactual(findings, "Pneumothorax", study=5) == \
        counterfactual(findings, "Pneumothorax", study=5)


def test_an_exclusion_that_holds_on_one_side_spares_what_the_other_side_shows():
    # Atelectasis excludes hyperinflation only in the same lung (a collapsed left lower lobe
    # beside an emphysematous right lung is common); the target takes the effusion's side.
    other_side = counterfactual("Small left pleural effusion. Hyperinflation of the right lung.",
                                "Atelectasis", source="Pleural Effusion")
    same_side = counterfactual("Small left pleural effusion. Hyperinflation of the left lung.",
                               "Atelectasis", source="Pleural Effusion")

    assert "Hyperinflation of the right lung." in other_side
    assert not any("yperinflation" in sentence for sentence in same_side)
    for sentences in (other_side, same_side):
        assert label_report(" ".join(sentences))["Atelectasis"] == LABEL_POSITIVE


def test_the_llm_is_told_where_an_exclusion_holds():
    findings = "Small left pleural effusion. Hyperinflation of the right lung."
    labels = dict.fromkeys(CHEXPERT_LABELS) | {"Pleural Effusion": 1.0}
    study = StudyInput(1, 2, "train", findings, labels)
    plan = perturbation_plan(GRAPH, "Pleural Effusion", "Atelectasis", EXTRACTOR.present(findings))
    task = CounterfactualTask(study, "Pleural Effusion", "Atelectasis", plan)

    assert "- negate: hyperinflation (only where it is on the target's side)" in plan_context(task)
    assert ("Atelectasis --exclusion (0.80, same side only)--> hyperinflation"
            in graph_context(GRAPH, task))

from cpo_pipeline.concepts.graph import build_concept_graph
from cpo_pipeline.concepts.mentions import ConceptExtractor
from cpo_pipeline.concepts.ontology import load_ontology
from cpo_pipeline.concepts.queries import perturbation_plan
from cpo_pipeline.counterfactuals.offline_expert import apply_plan, split_sentences

ONTOLOGY = load_ontology()
GRAPH = build_concept_graph(ONTOLOGY)
EXTRACTOR = ConceptExtractor(ONTOLOGY)


def counterfactual(findings, target, source=None):
    attributes = EXTRACTOR.present(findings)
    plan = perturbation_plan(GRAPH, source or "No Finding", target, attributes)
    return split_sentences(apply_plan(findings, plan, source, EXTRACTOR))


def test_a_lung_finding_drops_the_statement_that_the_lungs_are_clear():
    sentences = counterfactual(
        "The lungs are clear. Heart size is normal. No pleural effusion.", "Pneumonia")

    assert "The lungs are clear." not in sentences
    assert sentences[:2] == ["Heart size is normal.", "No pleural effusion."]


def test_pneumonia_drops_the_denial_of_the_consolidation_it_is_a_kind_of():
    sentences = counterfactual(
        "There is no focal consolidation. The cardiomediastinal silhouette is normal.",
        "Pneumonia")

    assert "There is no focal consolidation." not in sentences
    assert sentences[0] == "The cardiomediastinal silhouette is normal."


def test_lungs_otherwise_clear_and_statements_the_target_leaves_alone_are_kept():
    kept = counterfactual("Small left pleural effusion. The lungs are otherwise clear.",
                          "Pneumothorax", source="Pleural Effusion")
    heart = counterfactual("The lungs are clear. Heart size is normal.", "Pleural Effusion")

    assert "The lungs are otherwise clear." in kept
    assert heart[:2] == ["The lungs are clear.", "Heart size is normal."]

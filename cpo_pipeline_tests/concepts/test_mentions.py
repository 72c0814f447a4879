import re

import pytest

from cpo_pipeline.concepts import mentions
from cpo_pipeline.concepts.mentions import ConceptExtractor, concept_presence, phrase_pattern
from cpo_pipeline.concepts.ontology import load_ontology
from cpo_pipeline.radiology.labeller import (
    Mention,
    ObservationPhrases,
    classify_mentions,
    compile_phrases,
)

POS, NEG, UNC = 1.0, 0.0, -1.0


@pytest.fixture(scope="module")
def ontology():
    return load_ontology()


@pytest.fixture(scope="module")
def extractor(ontology):
    return ConceptExtractor(ontology)


def test_a_phrase_pattern_lets_a_hyphen_and_a_space_stand_for_each_other():
    pattern = re.compile(phrase_pattern("ground-glass opacity"))

    assert pattern.fullmatch("ground glass opacity")
    assert pattern.fullmatch("ground-glass  opacity")
    assert not pattern.fullmatch("groundglass opacity")


def test_any_phrase_table_gets_the_labeller_s_negation_and_uncertainty_rules():
    table = compile_phrases({"sign": ObservationPhrases(findings=("meniscus",))})

    assert [m.status for m in classify_mentions("Meniscus. No meniscus. Possible meniscus.",
                                                table)] == [POS, NEG, UNC]


def test_mentions_are_labelled_by_the_preferred_term_with_the_phrase_as_written(extractor):
    assert extractor.mentions("Blunting of the costophrenic angles.")[0] == Mention(
        "blunted costophrenic angle", "Blunting of the costophrenic angles", 0, 35, POS)


CASES = {
    "asserted": ("Kerley B lines are present.", {"Kerley B lines": POS}),
    "negated": ("No Kerley B lines.", {"Kerley B lines": NEG}),
    "negation runs through a list": (
        "No air bronchogram or meniscus sign.", {"air bronchogram": NEG, "meniscus sign": NEG}),
    "hedged": ("Possible air bronchograms.", {"air bronchogram": UNC}),
    "cannot exclude": ("Cannot exclude a deep sulcus sign.", {"deep sulcus sign": UNC}),
    "a synonym with a hyphen written as a space": (
        "Ground glass opacities bilaterally.", {"ground-glass opacity": POS}),
    "a negative word inside the term is not a negation": (
        "Absent lung markings beyond the pleural line.",
        {"absent lung markings": POS, "visceral pleural line": POS, "pleural space": POS}),
    "locations too": (
        "Consolidation in the right lower lobe, no effusion at the left base.",
        {"right lower lobe": POS, "lung bases": NEG}),
}


@pytest.mark.parametrize(("text", "expected"), CASES.values(), ids=CASES.keys())
def test_mention_status(extractor, text, expected):
    assert {m.label: m.status for m in extractor.mentions(text)} == expected


def test_present_keeps_only_asserted_concepts_in_ontology_order(extractor):
    text = "Meniscus sign. No pneumothorax, no visceral pleural line. Possible air bronchogram."

    assert extractor.present(text) == ["meniscus sign"]


def test_concept_presence_has_one_row_per_text_and_one_column_per_concept(ontology, extractor):
    presence = concept_presence(["Meniscus sign.", "", "No meniscus sign at the left base."],
                                ontology)

    assert list(presence.columns) == list(extractor.names)
    assert presence["meniscus sign"].tolist() == [True, False, False]
    assert presence.to_numpy().sum() == 1


def test_worker_processes_give_the_same_presence_in_the_same_order(ontology, monkeypatch):
    monkeypatch.setattr(mentions, "_CHUNK", 2)
    texts = ["Meniscus sign.", "Kerley B lines.", "", "Volume loss in the left lower lobe.",
             "No air bronchogram.", "Hyperinflated lungs."]

    in_two = concept_presence(texts, ontology, workers=2)

    assert in_two.equals(concept_presence(texts, ontology, workers=1))
    assert in_two["hyperinflation"].tolist() == [False] * 5 + [True]

from pathlib import Path

import pytest
import yaml

from cpo_pipeline.concepts.ontology import (
    ASSOCIATION,
    ATTRIBUTE,
    ATTRIBUTE_CATEGORIES,
    DISEASE,
    EXCLUSION,
    IRRELEVANCE,
    LOCATED_AT,
    LOCATION,
    OBSERVATION,
    SEED,
    SEED_PATH,
    SUBTYPE_OF,
    OntologyError,
    load_ontology,
)


@pytest.fixture(scope="module")
def seed():
    return load_ontology()


def test_the_seed_has_the_twelve_diseases_and_two_observations(seed):
    assert seed.names(DISEASE) == (
        "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum",
        "Fracture", "Lung Lesion", "Lung Opacity", "Pleural Effusion", "Pleural Other",
        "Pneumonia", "Pneumothorax",
    )
    assert seed.names(OBSERVATION) == ("No Finding", "Support Devices")


def test_the_seed_has_at_least_fifty_attributes_in_all_four_categories(seed):
    attributes = [c for c in seed.concepts if c.kind == ATTRIBUTE]

    assert len(attributes) >= 50
    assert {c.group for c in attributes} == set(ATTRIBUTE_CATEGORIES)


def test_the_seed_locates_lobes_pleura_heart_and_mediastinum(seed):
    locations = set(seed.names(LOCATION))

    assert {"right upper lobe", "right middle lobe", "right lower lobe", "left upper lobe",
            "left lower lobe", "pleural space", "heart", "mediastinum"} <= locations


def test_synonyms_normalise_to_the_preferred_term_whatever_the_case_and_hyphens(seed):
    assert seed.preferred_term("Ground glass") == "ground-glass opacity"
    assert seed.preferred_term("blunting of the  costophrenic angles") == (
        "blunted costophrenic angle")
    assert seed.preferred_term("CHF") == "Edema"
    assert seed.preferred_term("a made-up sign") is None


def test_the_seed_has_all_three_of_the_paper_s_relations(seed):
    relations = {e.relation for e in seed.edges}
    irrelevant = {(e.source, e.target) for e in seed.edges if e.relation == IRRELEVANCE}

    assert {ASSOCIATION, EXCLUSION, IRRELEVANCE} <= relations
    assert ("Cardiomegaly", "Fracture") in irrelevant


def test_the_seed_carries_the_chexpert_hierarchy_as_subtype_edges(seed):
    subtypes = {(e.source, e.target) for e in seed.edges if e.relation == SUBTYPE_OF}

    assert subtypes == {
        ("Edema", "Lung Opacity"), ("Consolidation", "Lung Opacity"),
        ("Pneumonia", "Lung Opacity"), ("Lung Lesion", "Lung Opacity"),
        ("Atelectasis", "Lung Opacity"), ("Pneumonia", "Consolidation"),
        ("Cardiomegaly", "Enlarged Cardiomediastinum"),
    }


def test_curated_edges_are_oriented_disease_first_and_keep_their_rationale(seed):
    [edge] = [e for e in seed.edges if {e.source, e.target} == {"Pneumothorax",
                                                                 "visceral pleural line"}]

    assert (edge.source, edge.target, edge.relation, edge.provenance, edge.weight) == (
        "Pneumothorax", "visceral pleural line", ASSOCIATION, SEED, 1.0)
    assert edge.rationale == "the displaced visceral pleural line is the defining sign"


def test_the_paper_s_contradiction_is_an_exclusion(seed):
    relations = {(e.source, e.target): e.relation for e in seed.edges}

    assert relations[("hyperinflation", "volume loss")] == EXCLUSION
    assert relations[("Atelectasis", "hyperinflation")] == EXCLUSION


def test_exclusions_that_depend_on_location_say_so(seed):
    scope = {frozenset((edge.source, edge.target)): edge.scope for edge in seed.edges
             if edge.relation == "exclusion"}

    assert scope[frozenset(("hyperlucency", "opacified hemithorax"))] == "same side"
    assert scope[frozenset(("well-circumscribed margin", "spiculated margin"))] == "same lesion"
    # Whole-chest properties exclude each other anywhere.
    assert scope[frozenset(("hyperinflation", "low lung volumes"))] is None
    assert scope[frozenset(("No Finding", "Pneumothorax"))] is None


def test_sites_become_located_at_edges(seed):
    sites = {e.target for e in seed.edges
             if e.relation == LOCATED_AT and e.source == "Pneumothorax"}

    assert "lung apices" in sites


def test_every_disease_has_a_curated_association(seed):
    associated = {name for e in seed.edges if e.relation == ASSOCIATION
                  for name in (e.source, e.target)}

    assert set(seed.names(DISEASE)) <= associated


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _seed_document() -> dict:
    return yaml.load(SEED_PATH.read_text(), Loader=_LOADER)


def _write(tmp_path: Path, document: dict) -> Path:
    path = tmp_path / "broken_seed.yaml"
    path.write_text(yaml.dump(document, Dumper=_DUMPER, sort_keys=False))
    return path


def _rename_disease(document: dict) -> None:
    document["diseases"][3]["name"] = "Oedema"


def _drop_disease(document: dict) -> None:
    del document["diseases"][0]


def _reuse_synonym(document: dict) -> None:
    document["attributes"]["density_anomaly"][1]["synonyms"].append("air bronchograms")


def _unknown_edge_end(document: dict) -> None:
    document["associations"][2]["between"][1] = "crazy paving"


def _weight_in_words(document: dict) -> None:
    document["associations"][12]["weight"] = "high"


def _weight_out_of_range(document: dict) -> None:
    document["exclusions"][0]["weight"] = 1.5


def _no_rationale(document: dict) -> None:
    del document["exclusions"][1]["rationale"]


def _pair_twice(document: dict) -> None:
    document["exclusions"].append(dict(document["associations"][0]))


def _self_loop(document: dict) -> None:
    document["associations"][0]["between"] = ["Atelectasis", "Atelectasis"]


def _wrong_hierarchy(document: dict) -> None:
    document["hierarchy"]["Consolidation"] = ["Pneumonia", "Edema"]


def _unknown_site(document: dict) -> None:
    document["diseases"][11]["sites"].append("left ventricle")


def _unknown_category(document: dict) -> None:
    document["attributes"]["texture"] = []


def _stray_field(document: dict) -> None:
    document["attributes"]["morphological_alteration"][0]["colour"] = "green"


def _scoped_association(document: dict) -> None:
    document["associations"][0]["scope"] = "same side"


def _unknown_scope(document: dict) -> None:
    document["exclusions"][0]["scope"] = "same lobe"


MALFORMED = {
    "unknown disease": (_rename_disease, "diseases[3].name",
                        "'Oedema' is not one of the CheXpert diseases"),
    "missing disease": (_drop_disease, "diseases", "missing ['Atelectasis']"),
    "synonym of two concepts": (
        _reuse_synonym, "attributes.density_anomaly[1] (ground-glass opacity).synonyms[4]",
        "'air bronchograms' already names 'air bronchogram'"),
    "edge to an unknown concept": (_unknown_edge_end, "associations[2].between[1]",
                                   "unknown disease or observation or attribute 'crazy paving'"),
    "weight in words": (_weight_in_words, "associations[12].weight",
                        "Input should be a valid number, got 'high'"),
    "weight above one": (_weight_out_of_range, "exclusions[0].weight",
                         "Input should be less than or equal to 1, got 1.5"),
    "edge without rationale": (_no_rationale, "exclusions[1].rationale", "Field required"),
    "pair related twice": (
        _pair_twice, "exclusions[24].between",
        "'Atelectasis' and 'volume loss' are already related at associations[0]"),
    "edge to itself": (_self_loop, "associations[0].between",
                       "a concept cannot relate to itself ('Atelectasis')"),
    "hierarchy unlike chexpert": (_wrong_hierarchy, "hierarchy", "expected CheXpert's hierarchy"),
    "unknown site": (_unknown_site, "diseases[11] (Pneumothorax).sites[5]",
                     "unknown location 'left ventricle'"),
    "unknown attribute category": (_unknown_category, "attributes.texture",
                                   "or 'functional_indicator', got 'texture'"),
    "scope on an association": (_scoped_association, "associations[0].scope",
                                "only an exclusion depends on where its two concepts sit"),
    "unknown scope": (_unknown_scope, "exclusions[0].scope",
                      "Input should be 'same side' or 'same lesion', got 'same lobe'"),
    "stray field": (_stray_field, "attributes.morphological_alteration[0] (air bronchogram).colour",
                    "Extra inputs are not permitted, got 'green'"),
}


@pytest.mark.parametrize(("break_it", "place", "problem"), MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_seed_names_the_file_the_place_and_the_problem(tmp_path, break_it, place,
                                                                    problem):
    document = _seed_document()
    break_it(document)

    with pytest.raises(OntologyError) as raised:
        load_ontology(_write(tmp_path, document))

    assert raised.value.source == "broken_seed.yaml"
    assert raised.value.place == place
    assert problem in raised.value.problem
    assert str(raised.value).startswith(f"broken_seed.yaml: {place}: ")


def test_invalid_yaml_names_the_line_and_column(tmp_path):
    path = tmp_path / "broken_seed.yaml"
    path.write_text("version: 1\ndiseases: [Atelectasis\n")

    expected = r"^broken_seed\.yaml: line 3, column 1: not valid YAML"
    with pytest.raises(OntologyError, match=expected):
        load_ontology(path)


def test_the_seed_hash_changes_with_the_file(tmp_path, seed):
    document = _seed_document()
    document["associations"][0]["weight"] = 0.9

    assert load_ontology(_write(tmp_path, document)).sha256 != seed.sha256

from dataclasses import replace

import pyarrow as pa
import pytest

from cpo_pipeline import schemas
from cpo_pipeline.concepts.graph import (
    associated_and_excluded,
    build_concept_graph,
    diseases_without_association,
    edge_table,
    edges_without_provenance,
    graph_json,
    node_table,
    read_graph,
    same_graph,
    strongest_associations,
    write_graph,
)
from cpo_pipeline.concepts.ontology import (
    ASSOCIATION,
    EXCLUSION,
    IRRELEVANCE,
    LLM,
    STATISTICS,
    ConceptEdge,
    load_ontology,
)


@pytest.fixture(scope="module")
def ontology():
    return load_ontology()


LEARNED = ConceptEdge("Pneumonia", "air bronchogram", ASSOCIATION, STATISTICS, 0.58, 15,
                      "lift 3.00", lift=3.0, ci_low=2.1, ci_high=3.6)


def test_the_graph_holds_every_concept_and_seed_edge(ontology):
    graph = build_concept_graph(ontology)

    assert graph.number_of_nodes() == len(ontology.concepts)
    assert graph.number_of_edges() == len(ontology.edges)
    assert graph.nodes["meniscus sign"] == {
        "kind": "attribute", "group": "morphological_alteration",
        "synonyms": ["meniscus", "meniscoid configuration", "meniscoid"], "study_count": 0,
    }
    assert graph.graph["seed_sha256"] == ontology.sha256


def test_the_seed_and_the_data_can_both_vouch_for_a_pair(ontology):
    graph = build_concept_graph(ontology, [LEARNED], {"air bronchogram": 20}, studies=100)

    assert set(graph["Pneumonia"]["air bronchogram"]) == {"association/seed",
                                                          "association/statistics"}
    assert graph["Pneumonia"]["air bronchogram"]["association/statistics"]["support"] == 15
    assert graph.nodes["air bronchogram"]["study_count"] == 20
    assert graph.graph["studies"] == 100


def test_a_disagreement_goes_to_the_more_trusted_source_and_is_recorded(ontology):
    learned_exclusion = ConceptEdge("Edema", "Kerley B lines", EXCLUSION, STATISTICS, 0.3, 40, "")
    llm_irrelevance = ConceptEdge("Edema", "Kerley B lines", IRRELEVANCE, LLM, 0.5, 3, "",
                                  model="m")

    graph = build_concept_graph(ontology, [learned_exclusion, llm_irrelevance])

    assert set(graph["Edema"]["Kerley B lines"]) == {"association/seed"}
    assert graph.graph["dropped_edges"] == [
        {"source": "Edema", "target": "Kerley B lines", "relation": "exclusion",
         "provenance": "statistics", "reason": "seed says association"},
        {"source": "Edema", "target": "Kerley B lines", "relation": "irrelevance",
         "provenance": "llm", "reason": "seed says association"},
    ]


def test_an_edge_to_an_unknown_concept_is_refused(ontology):
    stray = ConceptEdge("Edema", "crazy paving", ASSOCIATION, LLM, 0.5, 3, "", model="m")

    with pytest.raises(ValueError, match="names 'crazy paving', which is not in the ontology"):
        build_concept_graph(ontology, [stray])


def test_the_same_source_cannot_assert_a_relation_twice(ontology):
    with pytest.raises(ValueError, match="statistics asserts association between 'Pneumonia' "
                                         "and 'air bronchogram' twice"):
        build_concept_graph(ontology, [LEARNED, LEARNED])


def test_the_graph_loads_back_identically_from_its_json(ontology, tmp_path):
    graph = build_concept_graph(ontology, [LEARNED], {"Pneumonia": 25}, thresholds={"lift": 2.0})

    written = write_graph(graph, tmp_path / "concept_graph.json")
    reloaded = read_graph(tmp_path / "concept_graph.json")

    assert same_graph(graph, reloaded)
    assert graph_json(reloaded) == written


def test_the_json_is_the_same_bytes_for_the_same_inputs(ontology):
    assert graph_json(build_concept_graph(ontology, [LEARNED])) == graph_json(
        build_concept_graph(ontology, [LEARNED]))


def test_a_changed_edge_is_a_different_graph(ontology):
    heavier = replace(LEARNED, weight=0.6)

    assert not same_graph(build_concept_graph(ontology, [LEARNED]),
                          build_concept_graph(ontology, [heavier]))


def test_reading_something_that_is_not_a_graph_names_the_file(tmp_path):
    path = tmp_path / "concept_graph.json"
    path.write_text("{not json")

    with pytest.raises(ValueError, match=r"concept_graph\.json: not a concept graph"):
        read_graph(path)


def test_the_tables_conform_to_their_declared_schemas(ontology):
    graph = build_concept_graph(ontology, [LEARNED])

    nodes = schemas.conform(pa.Table.from_pandas(node_table(graph), preserve_index=False),
                            "concept_nodes")
    edges = schemas.conform(pa.Table.from_pandas(edge_table(graph), preserve_index=False),
                            "concept_edges")

    assert nodes.num_rows == len(ontology.concepts)
    assert edges.num_rows == len(ontology.edges) + 1
    learned = edges.filter(pa.compute.equal(edges["provenance"], "statistics")).to_pylist()
    assert learned == [{
        "source": "Pneumonia", "target": "air bronchogram", "relation": "association",
        "provenance": "statistics", "weight": 0.58, "support": 15, "rationale": "lift 3.00",
        "lift": 3.0, "ci_low": 2.1, "ci_high": 3.6, "model": None, "scope": None,
    }]


def test_the_seed_graph_passes_every_check(ontology):
    graph = build_concept_graph(ontology)

    assert diseases_without_association(graph) == []
    assert associated_and_excluded(graph) == []
    assert edges_without_provenance(graph) == []


def test_the_checks_find_what_they_look_for(ontology):
    graph = build_concept_graph(ontology)
    for source, target, key in list(graph.edges("Fracture", keys=True)):
        if key == "association/seed":
            graph.remove_edge(source, target, key)
    graph.add_edge("Edema", "Kerley B lines", key="exclusion/seed", relation=EXCLUSION,
                   provenance="seed", weight=1.0)
    graph.add_edge("Edema", "perihilar haze", key="association/guess", relation=ASSOCIATION,
                   provenance="guess", weight=1.0)

    assert diseases_without_association(graph) == ["Fracture"]
    assert associated_and_excluded(graph) == [("Edema", "Kerley B lines")]
    assert edges_without_provenance(graph) == [("Edema", "perihilar haze", "association/guess")]


def test_strongest_associations_per_disease(ontology):
    table = strongest_associations(build_concept_graph(ontology), per_disease=2)

    assert table.loc["Pleural Effusion"].tolist() == ["blunted costophrenic angle (0.95, seed)",
                                                      "meniscus sign (0.95, seed)"]
    assert len(table) == 12

import dagster as dg

from cpo_pipeline.definitions import defs

# The asset graph is part of the interface: a rename or a lost dependency must fail loudly here.
EXPECTED_GRAPH = {
    "mimic_cxr_source": [],
    "cxr_images": ["mimic_cxr_source"],
    "cxr_reports": ["mimic_cxr_source"],
    "cxr_labels": ["mimic_cxr_source"],
    "cxr_studies": ["mimic_cxr_source"],
    "ingest_rejects": ["mimic_cxr_source"],
    "concept_graph": ["cxr_studies"],
    "counterfactual_trajectories": ["concept_graph", "cxr_studies"],
}


def _graph(definitions: dg.Definitions) -> dict[str, list[str]]:
    repository = definitions.get_repository_def()
    graph = repository.asset_graph
    return {
        key.to_user_string(): sorted(parent.to_user_string() for parent in graph.get(key).parent_keys)
        for key in graph.get_all_asset_keys()
    }


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


def test_asset_graph_snapshot():
    assert _graph(defs) == EXPECTED_GRAPH


def test_every_materializable_asset_declares_a_code_version():
    graph = defs.get_repository_def().asset_graph
    missing = [
        key.to_user_string()
        for key in graph.materializable_asset_keys
        if graph.get(key).code_version is None
    ]
    assert missing == []

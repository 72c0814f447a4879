from cpo_pipeline import data_layout

NAMED = {data_layout.TABLES, data_layout.IMAGES, data_layout.PREVIEWS, data_layout.CONCEPTS,
         data_layout.LLM_CACHE, data_layout.DATASETS, data_layout.STAGED_DATASETS,
         data_layout.MODELS, data_layout.MLFLOW, data_layout.EVALUATION,
         data_layout.DEMO_TREE.parts[0]}


def test_every_directory_a_demo_run_writes_is_one_the_layout_names(demo_run):
    written = {path.name for path in demo_run.data_root.iterdir()}

    assert written <= NAMED
    assert {data_layout.TABLES, data_layout.IMAGES, data_layout.DATASETS} <= written


def test_the_layout_places_each_directory_under_the_root_given(tmp_path):
    assert data_layout.dataset(tmp_path, "sft_dataset") == tmp_path / "datasets" / "sft_dataset"
    assert data_layout.evaluation(tmp_path, staged=True) == tmp_path / "evaluation" / "staged"
    assert data_layout.demo_tree(tmp_path) == tmp_path / "demo" / "mimic-cxr"
    # The staged sets no longer share the training sets' namespace.
    assert data_layout.staged_datasets(tmp_path).parent == tmp_path
    assert data_layout.moved_staged_datasets(tmp_path) is None

import dagster as dg
import pyarrow.parquet as pq

from cpo_pipeline import schemas
from cpo_pipeline.definitions import defs
from cpo_pipeline.demo.generator import DemoConfig, write_demo_tree
from cpo_pipeline_tests.pipeline import materialize

TABLES = ("cxr_images", "cxr_reports", "cxr_labels", "cxr_studies", "ingest_rejects")
GATES = {"no_patient_in_two_splits", "every_study_has_image_and_findings",
         "label_values_in_domain", "rejects_below_bound"}


def _tables(data_root):
    return {name: pq.read_table(data_root / "tables" / f"{name}.parquet") for name in TABLES}


def _log_text(instance, result):
    """What the run logged, as the console and the UI show it."""
    return "\n".join(entry.user_message for entry in instance.all_logs(result.run_id))


def _tree_with_empty_reports(root, reports):
    write_demo_tree(root, DemoConfig(patients=6, seed=9))
    for report in sorted((root / "files").rglob("*.txt"))[:reports]:
        report.write_text("")
    return root


def test_a_fresh_data_root_gets_the_demo_tree_and_all_five_tables(demo_run):
    data_root, result = demo_run.data_root, demo_run.result

    assert (data_root / "demo" / "mimic-cxr" / "cxr-record-list.csv.gz").is_file()
    tables = _tables(data_root)
    for name, table in tables.items():
        assert table.schema.names == schemas.TABLES[name].names, name
    studies = tables["cxr_studies"].to_pandas()
    assert len(studies) > 0 and studies["study_id"].is_unique
    assert set(studies["split"]) == {"train", "validate", "test"}
    assert tables["ingest_rejects"].num_rows == 0
    gates = {c.check_name: c.passed for c in result.get_asset_check_evaluations()
             if c.asset_key == dg.AssetKey("cxr_studies")}
    assert gates == dict.fromkeys(GATES, True)
    images = result.asset_materializations_for_node("mimic_cxr_ingestion")
    thumbnails = next(m for m in images if m.asset_key.path == ["cxr_images"]).metadata
    assert thumbnails["thumbnails"].value.startswith("![preprocessed images](data:image/png;base64,")


def test_the_jpg_release_layout_materializes_the_same_tables(tmp_path):
    jpg_root = tmp_path / "mimic-cxr-jpg"
    write_demo_tree(jpg_root, DemoConfig(patients=12, seed=4, release="jpg"))
    result = materialize(tmp_path / "data", ["cxr_studies", "cxr_images", "cxr_reports"],
                         mimic_cxr_jpg_root=str(jpg_root))

    assert result.success
    data = tmp_path / "data" / "tables"
    images = pq.read_table(data / "cxr_images.parquet").to_pandas()
    assert images["source_path"].str.endswith(".jpg").all()
    assert images["transfer_syntax_uid"].isna().all()
    reports = pq.read_table(data / "cxr_reports.parquet").to_pandas()
    assert reports["report_path"].str.contains(r"mimic-cxr-reports\.zip!files/").all()
    assert pq.read_table(data / "cxr_studies.parquet").num_rows == len(reports) > 0
    assert not (tmp_path / "data" / "demo").exists()


def test_selecting_only_cxr_studies_still_stops_at_the_reject_gate_with_its_figures(tmp_path):
    root = _tree_with_empty_reports(tmp_path / "mimic", reports=3)
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(tmp_path / "d", "+counterfactual_trajectories", mimic_cxr_root=str(root),
                         raise_on_error=False, instance=instance)

    assert not result.success
    bound = next(c for c in result.get_asset_check_evaluations()
                 if c.check_name == "rejects_below_bound")
    assert not bound.passed and bound.asset_key == dg.AssetKey("cxr_studies")
    assert bound.metadata["studies_with_rejects"].value == 3
    listed = bound.metadata["studies_listed"].value
    assert f"{3 / listed:.1%} of listed studies (3 of {listed})" in bound.description
    assert "max_reject_fraction" in bound.description
    assert f"rejects_below_bound failed: {bound.description}" in _log_text(instance, result)
    assert not (tmp_path / "d" / "concepts").exists()
    assert not (tmp_path / "d" / "tables" / "counterfactual_trajectories.parquet").exists()


def test_the_bound_is_the_run_config_option_the_message_names(tmp_path):
    root = _tree_with_empty_reports(tmp_path / "mimic", reports=1)
    result = materialize(tmp_path / "d", ["cxr_studies"], mimic_cxr_root=str(root),
                         run_config={"ops": {"mimic_cxr_ingestion": {
                             "config": {"max_reject_fraction": 0.5}}}})

    assert result.success


def test_images_decoded_by_a_run_that_wrote_only_cxr_studies_are_not_decoded_again(tmp_path):
    root = tmp_path / "mimic"
    write_demo_tree(root, DemoConfig(patients=3, seed=2))
    instance = dg.DagsterInstance.ephemeral()
    first = materialize(tmp_path / "d", ["cxr_studies"], mimic_cxr_root=str(root),
                        instance=instance)
    again = materialize(tmp_path / "d", ["cxr_studies"], mimic_cxr_root=str(root),
                        instance=instance)

    assert first.success and again.success
    assert not (tmp_path / "d" / "tables" / "cxr_images.parquet").exists()
    images = len(list((root / "files").rglob("*.dcm")))
    assert f"({images} decoded, 0 unchanged" in _log_text(instance, first)
    assert f"(0 decoded, {images} unchanged" in _log_text(instance, again)


def test_the_launchpad_data_root_wins_over_the_environment_for_every_path(
    demo_run, tmp_path, clean_env
):
    environment_root = tmp_path / "from-env"
    clean_env.setenv("CPO_DATA_ROOT", str(environment_root))
    launchpad_root = demo_run.copy_to(tmp_path / "from-launchpad")
    written = launchpad_root / "tables" / "cxr_studies.parquet"
    before = written.stat().st_mtime_ns

    instance = dg.DagsterInstance.ephemeral()
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        run_config={"resources": {"settings": {"config": {"data_root": str(launchpad_root)}}}},
        asset_selection=[dg.AssetKey("cxr_studies")],
        instance=instance,
    )

    assert result.success
    assert not environment_root.exists()
    assert written.stat().st_mtime_ns > before
    assert "(0 decoded," in _log_text(instance, result)

import dagster as dg
import pyarrow.parquet as pq
import pytest

from cpo_pipeline import schemas
from cpo_pipeline.definitions import defs
from cpo_pipeline.demo.generator import DemoConfig, write_demo_tree
from cpo_pipeline.resources.parquet_io_manager import ParquetIOManager
from cpo_pipeline.resources.settings import PipelineSettings

TABLES = ("cxr_images", "cxr_reports", "cxr_labels", "cxr_studies", "ingest_rejects")


def _materialize(data_root, **settings):
    return dg.materialize(
        [defs.get_assets_def("cxr_studies")],
        resources={
            "settings": PipelineSettings(data_root=str(data_root), **settings),
            "io_manager": ParquetIOManager(data_root=str(data_root)),
        },
    )


def _tables(data_root):
    return {name: pq.read_table(data_root / "tables" / f"{name}.parquet") for name in TABLES}


@pytest.fixture
def no_mimic_env(monkeypatch):
    for name in ("MIMIC_CXR_ROOT", "MIMIC_CXR_JPG_ROOT", "CPO_DATA_ROOT"):
        monkeypatch.delenv(name, raising=False)


def test_a_fresh_data_root_gets_the_demo_tree_and_all_five_tables(tmp_path, no_mimic_env):
    result = _materialize(tmp_path)

    assert result.success
    assert (tmp_path / "demo" / "mimic-cxr" / "cxr-record-list.csv.gz").is_file()
    tables = _tables(tmp_path)
    for name, table in tables.items():
        assert table.schema.names == schemas.TABLES[name].names, name
    studies = tables["cxr_studies"].to_pandas()
    assert len(studies) > 0 and studies["study_id"].is_unique
    assert set(studies["split"]) == {"train", "validate", "test"}
    assert tables["ingest_rejects"].num_rows == 0
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 4 and all(check.passed for check in checks)
    images = result.asset_materializations_for_node("mimic_cxr_ingestion")
    thumbnails = next(m for m in images if m.asset_key.path == ["cxr_images"]).metadata
    assert thumbnails["thumbnails"].value.startswith("![preprocessed images](data:image/png;base64,")


def test_the_jpg_release_layout_materializes_the_same_tables(tmp_path, no_mimic_env):
    jpg_root = tmp_path / "mimic-cxr-jpg"
    write_demo_tree(jpg_root, DemoConfig(patients=12, seed=4, release="jpg"))
    result = _materialize(tmp_path / "data", mimic_cxr_jpg_root=str(jpg_root))

    assert result.success
    tables = _tables(tmp_path / "data")
    images = tables["cxr_images"].to_pandas()
    assert images["source_path"].str.endswith(".jpg").all()
    assert images["transfer_syntax_uid"].isna().all()
    reports = tables["cxr_reports"].to_pandas()
    assert reports["report_path"].str.contains(r"mimic-cxr-reports\.zip!files/").all()
    assert len(tables["cxr_studies"]) == tables["cxr_reports"].num_rows > 0
    assert not (tmp_path / "data" / "demo").exists()


def test_the_reject_bound_blocks_when_exceeded(tmp_path, no_mimic_env):
    root = tmp_path / "mimic"
    write_demo_tree(root, DemoConfig(patients=6, seed=9))
    for report in list((root / "files").rglob("*.txt"))[:3]:
        report.write_text("")
    result = dg.materialize(
        [defs.get_assets_def("cxr_studies")],
        resources={
            "settings": PipelineSettings(data_root=str(tmp_path / "d"), mimic_cxr_root=str(root)),
            "io_manager": ParquetIOManager(data_root=str(tmp_path / "d")),
        },
        run_config={"ops": {"mimic_cxr_ingestion": {"config": {"max_reject_fraction": 0.01}}}},
        raise_on_error=False,
    )

    bound = next(c for c in result.get_asset_check_evaluations()
                 if c.check_name == "rejects_below_bound")
    assert not bound.passed
    assert bound.metadata["studies_with_rejects"].value == 3

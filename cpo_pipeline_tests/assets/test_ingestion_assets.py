import dagster as dg
import pyarrow.parquet as pq

from cpo_pipeline.definitions import defs
from cpo_pipeline.resources.parquet_io_manager import ParquetIOManager
from cpo_pipeline.resources.settings import PipelineSettings


def test_materializing_everything_on_a_fresh_data_root_writes_the_tables(tmp_path, monkeypatch):
    monkeypatch.delenv("MIMIC_CXR_ROOT", raising=False)
    monkeypatch.delenv("MIMIC_CXR_JPG_ROOT", raising=False)
    result = dg.materialize(
        [defs.get_assets_def("cxr_studies")],
        resources={
            "settings": PipelineSettings(data_root=str(tmp_path)),
            "io_manager": ParquetIOManager(data_root=str(tmp_path)),
        },
    )

    assert result.success
    assert (tmp_path / "demo" / "mimic-cxr" / "cxr-record-list.csv.gz").is_file()
    studies = pq.read_table(tmp_path / "tables" / "cxr_studies.parquet").to_pandas()
    rejects = pq.read_table(tmp_path / "tables" / "ingest_rejects.parquet").to_pandas()
    assert len(studies) > 0 and studies["study_id"].is_unique
    assert set(studies["split"]) == {"train", "validate", "test"}
    assert rejects.empty

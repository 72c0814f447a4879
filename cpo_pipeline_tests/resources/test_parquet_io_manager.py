from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cpo_pipeline.resources.parquet_io_manager import ParquetIOManager
from cpo_pipeline.resources.settings import PipelineSettings
from cpo_pipeline.schemas import SchemaMismatchError


def _io_manager(data_root):
    return ParquetIOManager(settings=PipelineSettings(data_root=str(data_root)))


@dg.asset
def scores() -> pd.DataFrame:
    return pd.DataFrame({"study_id": [50000001, 50000002], "score": [0.25, 0.75]})


@dg.asset
def doubled(scores: pd.DataFrame) -> pd.DataFrame:
    return scores.assign(score=scores["score"] * 2)


@dg.asset
def as_arrow(scores: pa.Table) -> pd.DataFrame:
    return pd.DataFrame({"type_seen": [type(scores).__name__]})


def test_round_trips_a_table_and_writes_the_file_it_reports(tmp_path):
    result = dg.materialize(
        [scores, doubled], resources={"io_manager": _io_manager(tmp_path)}
    )

    materialization = result.asset_materializations_for_node("scores")[0]
    reported = Path(materialization.metadata["path"].value)
    assert reported == tmp_path / "tables" / "scores.parquet"
    assert pq.read_table(reported).to_pydict() == {
        "study_id": [50000001, 50000002],
        "score": [0.25, 0.75],
    }
    assert materialization.metadata["dagster/row_count"].value == 2
    doubled_table = pq.read_table(tmp_path / "tables" / "doubled.parquet")
    assert doubled_table.column("score").to_pylist() == [0.5, 1.5]


def test_inputs_annotated_as_arrow_tables_load_as_arrow(tmp_path):
    dg.materialize(
        [scores, as_arrow], resources={"io_manager": _io_manager(tmp_path)}
    )

    assert pq.read_table(tmp_path / "tables" / "as_arrow.parquet").column(
        "type_seen"
    ).to_pylist() == ["Table"]


def test_a_declared_table_with_a_missing_column_fails_the_step_that_wrote_it(tmp_path):
    @dg.asset(name="ingest_rejects")
    def broken_rejects() -> pd.DataFrame:
        return pd.DataFrame({"stage": ["x"], "path": ["y"]})

    with pytest.raises(SchemaMismatchError, match=r"missing \['reason'"):
        dg.materialize(
            [broken_rejects], resources={"io_manager": _io_manager(tmp_path)}
        )
    assert not (tmp_path / "tables" / "ingest_rejects.parquet").exists()


def test_with_no_data_root_configured_tables_go_under_the_environment_s(tmp_path, clean_env):
    clean_env.setenv("CPO_DATA_ROOT", str(tmp_path))
    dg.materialize([scores], resources={"io_manager": ParquetIOManager(settings=PipelineSettings())})

    assert (tmp_path / "tables" / "scores.parquet").is_file()

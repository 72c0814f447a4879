"""Ingestion fanned out over shards: two shard runs, then the unpartitioned ingestion, decode
every image once and write exactly the tables a plain unpartitioned run writes."""

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from cpo_pipeline.assets.shards import decode_image_shards
from cpo_pipeline.definitions import defs
from cpo_pipeline.demo.generator import DemoConfig, write_demo_tree
from cpo_pipeline.ingestion.image_store import (
    DECODE_CACHE_NAME,
    SHARD_RECORDS_DIRNAME,
    ImageResult,
    read_decode_cache,
    write_decode_cache,
    write_shard_record,
)
from cpo_pipeline.ingestion.shards import SHARDS, shard_of
from cpo_pipeline.resources.parquet_io_manager import ParquetIOManager
from cpo_pipeline.resources.settings import PipelineSettings
from cpo_pipeline_tests.pipeline import materialize

TABLES = ("cxr_images", "cxr_reports", "cxr_labels", "cxr_studies", "ingest_rejects")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mimic") / "mimic-cxr"
    write_demo_tree(root, DemoConfig(patients=10, seed=3))
    return root


def _images_per_shard(tree: Path) -> dict[str, int]:
    records = pd.read_csv(tree / "cxr-record-list.csv.gz")
    return records["subject_id"].map(shard_of).value_counts().to_dict()


def _run_shard(data_root: Path, tree: Path, shard: str):
    settings = PipelineSettings(data_root=str(data_root), mimic_cxr_root=str(tree))
    result = decode_image_shards.execute_in_process(
        partition_key=shard,
        resources={"settings": settings, "io_manager": ParquetIOManager(settings=settings)})
    assert result.success
    [output] = [event for event in result.all_events if event.event_type_value == "STEP_OUTPUT"]
    metadata = output.event_specific_data.metadata
    return {key: value.value for key, value in metadata.items()}


def _ingest(data_root: Path, tree: Path) -> int:
    result = materialize(data_root, list(TABLES), mimic_cxr_root=str(tree))
    assert result.success
    [images] = [m for m in result.asset_materializations_for_node("mimic_cxr_ingestion")
                if m.asset_key.path == ["cxr_images"]]
    return images.metadata["decoded_this_run"].value


def _tables(data_root: Path) -> dict[str, pd.DataFrame]:
    """Each table with the data root cut out of its paths, so two roots compare equal."""
    tables = {}
    for name in TABLES:
        frame = pq.read_table(data_root / "tables" / f"{name}.parquet").to_pandas()
        for column in ("image_path", "path"):
            if column in frame:
                frame[column] = frame[column].str.replace(str(data_root), "<root>", regex=False)
        tables[name] = frame
    return tables


def _pngs(data_root: Path) -> set[str]:
    return {str(p.relative_to(data_root)) for p in (data_root / "images").rglob("*.png")}


def test_the_demo_tree_spans_several_shards(tree):
    assert len(_images_per_shard(tree)) >= 3


def test_shard_runs_then_the_full_ingestion_decode_each_image_once_and_match_a_plain_run(
    tree, tmp_path
):
    per_shard = _images_per_shard(tree)
    first, second = sorted(per_shard)[:2]
    fanned_out = tmp_path / "fanned-out"

    shard_runs = [_run_shard(fanned_out, tree, shard) for shard in (first, second)]
    decoded_after_shards = _ingest(fanned_out, tree)
    plain = tmp_path / "plain"
    decoded_plain = _ingest(plain, tree)

    assert [run["decoded_this_run"] for run in shard_runs] == [per_shard[first], per_shard[second]]
    assert [run["listed_images"] for run in shard_runs] == [per_shard[first], per_shard[second]]
    total = sum(per_shard.values())
    assert decoded_plain == total
    # The full run decodes only what no shard run did: every image is decoded exactly once.
    assert decoded_after_shards == total - per_shard[first] - per_shard[second]
    fanned, reference = _tables(fanned_out), _tables(plain)
    for name in TABLES:
        pd.testing.assert_frame_equal(fanned[name], reference[name], obj=name)
    assert _pngs(fanned_out) == _pngs(plain)


def test_the_full_ingestion_folds_the_shard_records_into_the_decode_cache(tree, tmp_path):
    data_root = tmp_path / "data"
    _run_shard(data_root, tree, min(_images_per_shard(tree)))
    records = data_root / "images" / SHARD_RECORDS_DIRNAME
    assert len(list(records.glob("*.parquet"))) == 1

    _ingest(data_root, tree)

    assert list(records.glob("*.parquet")) == []
    cache = read_decode_cache(data_root / "images")
    assert len(cache) == sum(_images_per_shard(tree).values())
    assert (data_root / "images" / DECODE_CACHE_NAME).is_file()


def test_a_shard_run_again_decodes_nothing(tree, tmp_path):
    shard = min(_images_per_shard(tree))
    _run_shard(tmp_path / "data", tree, shard)

    again = _run_shard(tmp_path / "data", tree, shard)

    assert again["decoded_this_run"] == 0
    assert again["already_decoded"] == again["listed_images"] > 0


def _result(dicom_id: str, source_sha256: str) -> ImageResult:
    return ImageResult(
        dicom_id=dicom_id, study_id=50000001, subject_id=10000001, source_path=f"/{dicom_id}.dcm",
        source_sha256=source_sha256, rows=10, cols=10, photometric_interpretation="MONOCHROME2",
        transfer_syntax_uid="1.2.840.10008.1.2.1", bits_stored=12, view_position="PA",
        image_path=f"/store/{dicom_id}.png", image_sha256="ab" * 32, width=10, height=10,
        recipe="v1 longest_side=512 equalize=False")


def test_the_record_written_last_wins_and_an_unfolded_shard_record_stays(tmp_path):
    store = tmp_path / "images"
    write_decode_cache(store, [_result("a", "old"), _result("b", "old")])
    # A shard run that finished after the full run decoded a changed source of "a".
    record = write_shard_record(store, "p10", [_result("a", "new")])

    assert read_decode_cache(store)["a"].source_sha256 == "new"
    assert read_decode_cache(store)["b"].source_sha256 == "old"
    # A full run whose results predate that decode must not drop the shard's record.
    write_decode_cache(store, [_result("a", "old"), _result("b", "old")])
    assert record.is_file()
    write_decode_cache(store, [_result("a", "new"), _result("b", "old")])
    assert not record.is_file()


def test_the_code_location_has_the_shard_job_and_the_asset_graph_unchanged():
    job = defs.resolve_job_def("decode_image_shards")

    assert job.partitions_def.get_partition_keys() == list(SHARDS)
    graph = defs.get_repository_def().asset_graph
    assert not any(graph.get(key).is_partitioned for key in graph.get_all_asset_keys())

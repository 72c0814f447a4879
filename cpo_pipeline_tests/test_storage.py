import pyarrow as pa

from cpo_pipeline.storage import table_fingerprint, table_path, write_parquet


def test_table_paths_sit_under_the_data_root(tmp_path):
    assert table_path(tmp_path, ["cxr_studies"]) == tmp_path / "tables" / "cxr_studies.parquet"
    assert table_path(tmp_path, ["cxr_images"], "p10") == tmp_path / "tables" / "cxr_images" / "p10.parquet"


def test_fingerprint_depends_on_values_not_on_chunking():
    one_chunk = pa.table({"a": [1, 2, 3, 4]})
    two_chunks = pa.concat_tables([pa.table({"a": [1, 2]}), pa.table({"a": [3, 4]})])

    assert table_fingerprint(one_chunk) == table_fingerprint(two_chunks)
    assert table_fingerprint(one_chunk) != table_fingerprint(pa.table({"a": [1, 2, 3, 5]}))


def test_write_parquet_leaves_no_temp_files(tmp_path):
    target = tmp_path / "t" / "x.parquet"
    write_parquet(pa.table({"a": [1]}), target)

    assert [p.name for p in target.parent.iterdir()] == ["x.parquet"]

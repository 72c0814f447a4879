import hashlib

import pyarrow as pa

from cpo_pipeline.storage import (
    content_hash,
    previous_table,
    sha256_file,
    table_fingerprint,
    table_path,
    write_parquet,
)


def test_content_hash_is_the_sha256_of_canonical_json_whatever_the_key_order():
    expected = hashlib.sha256('{"a":[1,"é"],"b":2}'.encode()).hexdigest()

    assert content_hash({"b": 2, "a": [1, "é"]}) == expected
    assert content_hash({"a": [1, "é"], "b": 2}) == expected


def test_content_hash_of_bytes_text_and_a_file_is_the_sha256_of_those_bytes(tmp_path):
    (tmp_path / "f").write_bytes(b"MIMIC")
    expected = hashlib.sha256(b"MIMIC").hexdigest()

    assert content_hash(b"MIMIC") == content_hash("MIMIC") == sha256_file(tmp_path / "f") == expected


def test_previous_table_is_what_the_asset_last_wrote_or_none(tmp_path):
    assert previous_table(tmp_path, "cxr_studies") is None
    write_parquet(pa.table({"study_id": [50000001]}), table_path(tmp_path, ["cxr_studies"]))

    assert previous_table(tmp_path, "cxr_studies")["study_id"].tolist() == [50000001]


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

import gzip

from cpo_pipeline import mimic_layout
from cpo_pipeline.demo.generator import DemoConfig, write_demo_tree
from cpo_pipeline.ingestion.source import (
    MimicSource,
    manifest_hash,
    resolve_source,
    source_manifest,
)
from cpo_pipeline.settings import load_settings


def test_unconfigured_settings_resolve_to_the_demo_tree_under_the_data_root(tmp_path):
    source = resolve_source(load_settings({"CPO_DATA_ROOT": str(tmp_path)}))

    assert source.is_demo
    assert source.dicom_root == tmp_path / "demo" / "mimic-cxr"


def test_tables_are_found_gzipped_or_plain_in_either_root(tmp_path):
    dicom, jpg = tmp_path / "dicom", tmp_path / "jpg"
    dicom.mkdir(), jpg.mkdir()
    (dicom / "cxr-record-list.csv.gz").write_bytes(b"")
    (jpg / "mimic-cxr-2.0.0-split.csv").write_text("")
    source = MimicSource(dicom, jpg, is_demo=False)

    assert source.find_table(mimic_layout.RECORD_LIST) == dicom / "cxr-record-list.csv.gz"
    assert source.find_table(mimic_layout.SPLIT) == jpg / "mimic-cxr-2.0.0-split.csv"
    assert source.find_table(mimic_layout.CHEXPERT) is None


def test_one_tree_named_by_both_variables_is_one_root(tmp_path):
    source = MimicSource(tmp_path, tmp_path, is_demo=False)

    assert source.roots == (tmp_path,)


def test_manifest_hash_is_stable_and_changes_when_an_index_table_changes(tmp_path):
    write_demo_tree(tmp_path, DemoConfig(patients=3, seed=2))
    source = MimicSource(tmp_path, None, is_demo=True)
    before = manifest_hash(source_manifest(source))

    assert manifest_hash(source_manifest(source)) == before
    with gzip.open(tmp_path / f"{mimic_layout.CHEXPERT}.gz", "at") as handle:
        handle.write("10000001,50000001,1.0,,,,,,,,,,,,,\n")
    assert manifest_hash(source_manifest(source)) != before

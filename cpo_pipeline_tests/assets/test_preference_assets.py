"""The four training sets on the demo chain: materialized, gated, loadable with
`datasets.load_from_disk`, and fed through TRL's vision collators to the tiny model."""

import math

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from datasets import load_from_disk
from transformers import AutoModelForImageTextToText, AutoProcessor
from trl.trainer.dpo_trainer import DataCollatorForVisionPreference
from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

from cpo_pipeline.assets.preference import _CHECK_NAMES
from cpo_pipeline.preference.prompt import DEFAULT_REQUEST, prompt_hash
from cpo_pipeline.training.tiny_model import TinyModelSpec, build_tiny_model
from cpo_pipeline_tests.pipeline import materialize

SETS = ("sft_dataset", "preference_pairs", "random_negative_pairs", "diagnosis_only_pairs")
PAIR_SETS = SETS[1:]


def _table(data_root, name: str) -> pd.DataFrame:
    return pq.read_table(data_root / "tables" / f"{name}.parquet").to_pandas()


def _materializations(result) -> dict:
    return {m.asset_key.to_user_string(): m.materialization
            for m in result.get_asset_materialization_events()}


@pytest.fixture(scope="module")
def tiny(demo_run, tmp_path_factory):
    texts = [DEFAULT_REQUEST, *_table(demo_run.data_root, "sft_dataset")["completion"],
             *_table(demo_run.data_root, "preference_pairs")["rejected"]]
    directory = build_tiny_model(texts, TinyModelSpec(), out_dir=tmp_path_factory.mktemp("tiny"))
    return AutoProcessor.from_pretrained(directory), AutoModelForImageTextToText.from_pretrained(
        directory)


def _rows(paths: dict, count: int = 2) -> list[dict]:
    return [dict(row) for row in load_from_disk(paths["train"]).select(range(count))]


def test_the_four_sets_materialize_with_every_gate_passed(demo_run):
    materialized = _materializations(demo_run.result)
    checks = [c for c in demo_run.result.get_asset_check_evaluations()
              if c.asset_key.to_user_string() in SETS]
    tables = {name: _table(demo_run.data_root, name) for name in SETS}

    assert set(SETS) <= set(materialized)
    assert sorted((c.asset_key.to_user_string(), c.check_name) for c in checks) == sorted(
        (name, check) for name in SETS for check in _CHECK_NAMES[name])
    assert all(c.passed for c in checks), [c.description for c in checks if not c.passed]
    pairs = tables["preference_pairs"]
    assert len(pairs) > 100
    assert len(tables["random_negative_pairs"]) == len(tables["diagnosis_only_pairs"]) == len(pairs)
    sft = tables["sft_dataset"]
    assert sft["study_id"].is_unique and len(sft) > 50
    for name, table in tables.items():
        counts = materialized[name].metadata["rows_per_split"].value
        assert counts == {split: int((table["split"] == split).sum())
                          for split in ("train", "validate", "test")}, name
        assert (table["prompt_hash"] == prompt_hash(DEFAULT_REQUEST)).all()


def test_every_row_traces_to_the_inputs_it_was_built_from(demo_run):
    materialized = _materializations(demo_run.result)
    upstream = {column: materialized[name].tags["dagster/data_version"] for column, name in (
        ("trajectories_version", "counterfactual_trajectories"),
        ("studies_version", "cxr_studies"), ("images_version", "cxr_images"))}
    trajectories = _table(demo_run.data_root, "counterfactual_trajectories")
    studies = _table(demo_run.data_root, "cxr_studies").set_index("study_id")

    for name in SETS:
        table = _table(demo_run.data_root, name)
        for column, version in upstream.items():
            assert (table[column] == version).all(), (name, column)
        assert (table["split"] == table["study_id"].map(studies["split"])).all()
        assert (table["image_path"] == table["study_id"].map(studies["image_path"])).all()
    pairs = _table(demo_run.data_root, "preference_pairs")
    accepted = trajectories[trajectories["verdict"] == "accepted"]
    assert set(zip(pairs["study_id"], pairs["target_disease"], strict=True)) <= set(
        zip(accepted["study_id"], accepted["target_disease"], strict=True))
    assert set(pairs["rejected"]) <= set(accepted["text"])


def test_each_split_loads_from_disk_with_its_rows_and_the_card_beside_it(demo_run):
    materialized = _materializations(demo_run.result)

    for name in SETS:
        metadata = materialized[name].metadata
        table = _table(demo_run.data_root, name)
        id_column = "example_id" if name == "sft_dataset" else "pair_id"
        paths = metadata["dataset_splits"].value
        assert sorted(paths) == ["test", "train", "validate"]
        for split, path in paths.items():
            loaded = load_from_disk(path)
            assert loaded[id_column] == table.loc[table["split"] == split, id_column].tolist()
        card = (demo_run.data_root / "datasets" / name / "README.md").read_text()
        assert card == metadata["dataset_card"].value
        assert "PhysioNet" in card and f"| kept | {len(table)} |" in card


def test_a_batch_of_each_pair_set_goes_through_the_vision_preference_collator(demo_run, tiny):
    processor, model = tiny
    materialized = _materializations(demo_run.result)
    collator = DataCollatorForVisionPreference(processor)

    for name in PAIR_SETS:
        examples = _rows(materialized[name].metadata["dataset_splits"].value)
        expected = [example[side][0]["content"] + "</s>"
                    for side in ("chosen", "rejected") for example in examples]

        batch = collator(examples)
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           pixel_values=batch["pixel_values"]).logits

        completions = [processor.tokenizer.decode(row[mask.bool()]) for row, mask in
                       zip(batch["input_ids"], batch["completion_mask"], strict=True)]
        assert completions == expected, name
        assert batch["pixel_values"].shape[0] == 4
        assert torch.isfinite(logits).all()
    assert expected[0].startswith("The disease of this patient is")  # diagnosis only: no thinking


def test_a_batch_of_sft_examples_goes_through_the_vision_sft_collator_to_a_finite_loss(
    demo_run, tiny
):
    processor, model = tiny
    paths = _materializations(demo_run.result)["sft_dataset"].metadata["dataset_splits"].value
    examples = _rows(paths)
    answers = [example["messages"][1]["content"] for example in examples]

    batch = DataCollatorForVisionLanguageModeling(processor, assistant_only_loss=True)(examples)
    loss = model(**batch).loss

    targets = [processor.tokenizer.decode(row[row != -100]) for row in batch["labels"]]
    assert targets == [f"{answer}</s>" for answer in answers]
    assert answers[0].startswith("<think>")
    assert math.isfinite(loss.item()) and loss.item() > 0


def test_a_failing_gate_blocks_the_sets_built_on_it(demo_run, tmp_path):
    data_root = demo_run.copy_to(tmp_path / "data")
    # cxr_images now records another hash for one study's image than its file has.
    images_path = data_root / "tables" / "cxr_images.parquet"
    images = pq.read_table(images_path)
    first = _table(data_root, "preference_pairs")["dicom_id"][0]
    frame = images.to_pandas()
    frame.loc[frame["dicom_id"] == first, "image_sha256"] = "0" * 64
    pq.write_table(pa.Table.from_pandas(frame, schema=images.schema, preserve_index=False),
                   images_path)

    result = materialize(data_root, list(SETS), raise_on_error=False)

    failed = {(c.asset_key.to_user_string(), c.check_name)
              for c in result.get_asset_check_evaluations() if not c.passed}
    assert failed == {("preference_pairs", "images_exist_and_match_sha256"),
                      ("sft_dataset", "images_exist_and_match_sha256")}
    assert not result.success
    materialized = set(_materializations(result))
    assert {"random_negative_pairs", "diagnosis_only_pairs"}.isdisjoint(materialized)

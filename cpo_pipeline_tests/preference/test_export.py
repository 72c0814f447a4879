import json

import numpy as np
import pytest
from datasets import Image, List, load_from_disk
from PIL import Image as PILImage

from cpo_pipeline.preference.assembly import cpo_pairs, sft_examples
from cpo_pipeline.preference.card import PAIR_COLUMNS, dataset_card
from cpo_pipeline.preference.export import export_set
from cpo_pipeline.storage import sha256_file
from cpo_pipeline_tests.preference.frames import (
    REQUEST,
    counterfactual,
    factual,
    prepared,
    studies,
    trajectories,
)

SPLITS = {1: (101, "train"), 2: (102, "train"), 3: (103, "validate")}


@pytest.fixture
def ready(tmp_path):
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    for study in SPLITS:
        pixels = np.full((40 + study, 32), 40 * study, dtype=np.uint8)
        PILImage.fromarray(pixels, mode="L").save(image_dir / f"{study}.png")
    study_frame = studies(SPLITS, image_dir=str(image_dir))
    images = study_frame[["dicom_id"]].assign(
        image_sha256=[sha256_file(image_dir / f"{study}.png") for study in SPLITS])
    rows = trajectories(
        factual(1, "The lungs are clear."),
        counterfactual(1, "Small effusion.", "Pleural Effusion"),
        factual(2, "Mild edema.", "Edema"), counterfactual(2, "No edema.", "No Finding"),
        factual(3, "Right pneumothorax.", "Pneumothorax"),
        counterfactual(3, "No pneumothorax.", "No Finding"))
    return prepared(rows, study_frame, images)


def test_each_split_loads_with_images_decoded_lazily_from_their_files(ready, tmp_path):
    pairs = cpo_pairs(ready, REQUEST)
    paths = export_set(pairs.frame, "preference_pairs", tmp_path / "root", "# card\n")

    train = load_from_disk(str(paths["train"]))

    assert sorted(paths) == ["train", "validate"]  # the test split has no rows
    assert train.features["images"] == List(Image())
    assert train.column_names[:4] == ["images", "prompt", "chosen", "rejected"]
    assert len(train) == 2 and len(load_from_disk(str(paths["validate"]))) == 1
    assert not (paths["train"].parent / "test").exists()
    stored = train.data.column("images").to_pylist()[0]
    assert stored == [{"bytes": None, "path": pairs.frame["image_path"][0]}]
    # Read when the row is: a file replaced after loading is the one decoded.
    PILImage.new("L", (7, 9)).save(pairs.frame["image_path"][0])
    row = train[0]
    assert row["images"][0].size == (7, 9)
    assert row["prompt"] == [{"role": "user", "content": REQUEST}]
    assert row["chosen"] == [{"role": "assistant", "content": pairs.frame["chosen"][0]}]
    assert row["rejected"] == [{"role": "assistant", "content": pairs.frame["rejected"][0]}]
    assert row["pair_id"] == pairs.frame["pair_id"][0]
    assert row["study_id"] == 1


def test_the_saved_arrow_files_hold_no_image_bytes(ready, tmp_path):
    paths = export_set(cpo_pairs(ready, REQUEST).frame, "preference_pairs", tmp_path, "# c\n")

    arrow = b"".join(path.read_bytes() for path in paths["train"].glob("*.arrow"))

    assert arrow and b"\x89PNG" not in arrow
    info = json.loads((paths["train"] / "dataset_info.json").read_text())
    assert info["features"]["images"] == {"feature": {"_type": "Image"}, "_type": "List"}


def test_sft_examples_are_one_conversation_each(ready, tmp_path):
    examples = sft_examples(ready, REQUEST)
    paths = export_set(examples.frame, "sft_dataset", tmp_path, "# c\n")

    row = load_from_disk(str(paths["validate"]))[0]

    assert row["messages"] == [{"role": "user", "content": REQUEST},
                               {"role": "assistant", "content": examples.frame["completion"][2]}]
    assert row["images"][0].size == (32, 43)
    assert row["example_id"] == examples.frame["example_id"][2]


def test_an_export_replaces_the_previous_one_whole(ready, tmp_path):
    frame = cpo_pairs(ready, REQUEST).frame
    export_set(frame, "preference_pairs", tmp_path, "# first\n")
    stale = tmp_path / "datasets" / "preference_pairs" / "stale.txt"
    stale.write_text("left over")

    export_set(frame[frame["split"] == "train"], "preference_pairs", tmp_path, "# second\n")

    target = tmp_path / "datasets" / "preference_pairs"
    assert not stale.exists()
    assert (target / "README.md").read_text() == "# second\n"
    assert sorted(p.name for p in target.iterdir()) == ["README.md", "train"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["preference_pairs"]


def test_the_card_has_counts_filters_lineage_and_the_data_use_notice(ready):
    pairs = cpo_pairs(ready, REQUEST)

    card = dataset_card("preference_pairs", "CPO pairs.", pairs.frame, pairs.filters,
                        {"prompt_hash": "abc", "request": "a | b"}, PAIR_COLUMNS)

    assert card.startswith("# preference_pairs\n\nCPO pairs.")
    assert "| train | 2 | 2 | 2 |" in card and "| test | 0 | 0 | 0 |" in card
    assert "| not accepted (rejected or dead letter) | 0 |" in card
    assert "| kept | 3 |" in card
    assert "| request | `a \\| b` |" in card
    assert "PhysioNet" in card and "Do not redistribute" in card

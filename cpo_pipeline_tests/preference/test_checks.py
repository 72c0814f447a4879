import pandas as pd
import pytest

from cpo_pipeline.preference.checks import (
    PairGateBounds,
    chosen_differs_from_rejected,
    images_match,
    no_patient_in_two_splits,
    no_test_study_in_training,
    pairs_are_hard_negatives,
)
from cpo_pipeline.radiology.answer_format import format_trajectory
from cpo_pipeline.storage import sha256_file


def _pairs(**columns) -> pd.DataFrame:
    base = {"pair_id": ["p1", "p2", "p3"], "study_id": [1, 2, 3], "subject_id": [11, 12, 13],
            "split": ["train", "train", "test"], "rejected_study_id": [1, 2, 3],
            "chosen": ["No effusion.", "Edema.", "Clear."],
            "rejected": ["Small effusion.", "No edema.", "Pneumothorax."]}
    return pd.DataFrame({**base, **columns})


def test_a_patient_in_two_splits_fails_naming_the_patient():
    assert no_patient_in_two_splits(_pairs()).passed

    leaked = no_patient_in_two_splits(_pairs(subject_id=[11, 13, 13]))

    assert not leaked.passed
    assert leaked.metadata["examples"] == [13]
    assert "subject_id [13]" in leaked.description


def test_a_pair_whose_chosen_equals_its_rejected_fails_naming_the_pair():
    assert chosen_differs_from_rejected(_pairs()).passed

    same = chosen_differs_from_rejected(_pairs(rejected=["Small effusion.", "EDEMA", "x"]))

    assert not same.passed
    assert same.metadata == {"pairs_chosen_equals_rejected": 1, "examples": ["p2"]}


def test_a_missing_image_and_an_image_with_another_hash_fail_naming_study_and_file(tmp_path):
    paths = []
    for name, content in (("a.png", b"first"), ("b.png", b"second")):
        (tmp_path / name).write_bytes(content)
        paths.append(str(tmp_path / name))
    good = _pairs(image_path=[paths[0], paths[0], paths[1]],
                  image_sha256=[sha256_file(tmp_path / "a.png")] * 2
                  + [sha256_file(tmp_path / "b.png")])
    hashed = []

    result = images_match(good, hash_file=lambda path: hashed.append(path) or sha256_file(path))

    assert result.passed and result.metadata["images"] == 2
    assert len(hashed) == 2  # each distinct image once
    broken = good.assign(image_path=[paths[0], str(tmp_path / "gone.png"), paths[1]],
                         image_sha256=[good["image_sha256"][0], "0" * 64, "f" * 64])
    failed = images_match(broken)
    assert not failed.passed
    assert (failed.metadata["missing"], failed.metadata["sha256_mismatch"]) == (1, 1)
    assert any("study 2" in line and "gone.png" in line for line in failed.metadata["examples"])
    assert any("study 3" in line and "b.png" in line for line in failed.metadata["examples"])


def test_a_train_pair_built_from_a_test_study_fails_on_either_side():
    official = pd.Series({1: "train", 2: "train", 3: "test", 4: "test"})
    assert no_test_study_in_training(_pairs(), official).passed

    chosen_side = no_test_study_in_training(_pairs(study_id=[4, 2, 3]), official)
    rejected_side = no_test_study_in_training(_pairs(rejected_study_id=[1, 3, 3]), official)

    assert not chosen_side.passed and chosen_side.metadata["examples"] == ["p1"]
    assert not rejected_side.passed and rejected_side.metadata["examples"] == ["p2"]


def test_the_test_study_gate_reads_sft_examples_too():
    examples = pd.DataFrame({"example_id": ["e1"], "study_id": [3], "split": ["train"]})

    result = no_test_study_in_training(examples, pd.Series({3: "test"}))

    assert not result.passed and "example_id ['e1']" in result.description


_WORDING = ("Heart size is normal.", "No acute osseous abnormality.",
            "The mediastinum is unremarkable.", "Lung volumes are low.",
            "The hila are within normal limits.", "Degenerative changes of the spine.",
            "Surgical clips in the abdomen.", "The aorta is tortuous.")


def _gate_pairs(rejected_findings) -> pd.DataFrame:
    rows = []
    for study in range(40):
        kept = f"{_WORDING[study % 8]} {_WORDING[(study * 3 + 1) % 8]}"
        rows.append({
            "study_id": study, "subject_id": 1000 + study, "split": "train",
            "chosen": format_trajectory(f"{kept} There is a small effusion.", ["Pleural Effusion"]),
            "rejected": format_trajectory(rejected_findings(kept), ["Pneumothorax"])})
    return pd.DataFrame(rows)


def test_pairs_that_differ_only_in_the_finding_pass_the_hard_negative_gate():
    result = pairs_are_hard_negatives(
        _gate_pairs(lambda kept: f"{kept} There is a small pneumothorax."))

    assert result.passed, result.description
    assert result.metadata["style_accuracy"] == pytest.approx(0.5)
    assert result.metadata["length_median_ratio"] == pytest.approx(1.0)


def test_a_style_separable_set_fails_the_hard_negative_gate():
    # Every rejected text ends with the same template sentence, as long as the one it replaced.
    result = pairs_are_hard_negatives(
        _gate_pairs(lambda kept: f"{kept} Appearance typical of stated condition."))

    assert not result.passed
    assert result.metadata["style_accuracy"] == pytest.approx(1.0)
    assert result.metadata["style_accuracy_lower_bound"] > 0.9
    assert "style accuracy 1.000" in result.description
    assert "length" not in result.description  # the lengths are alike: style alone fails it


def test_the_hard_negative_gate_measures_a_bounded_sample_of_train_pairs():
    pairs = _gate_pairs(lambda kept: f"{kept} There is a small pneumothorax.")
    pairs.loc[30:, "split"] = "validate"

    result = pairs_are_hard_negatives(pairs, PairGateBounds(sample=20))

    assert result.metadata["style_pairs"] == 20


def test_rejected_texts_much_longer_fail_the_length_gate():
    result = pairs_are_hard_negatives(_gate_pairs(
        lambda kept: f"{kept} {kept} {kept} There is a small pneumothorax."))

    assert not result.passed
    assert "length ratio" in result.description and "longer in 100% of pairs" in result.description

import pandas as pd
import pytest

from cpo_pipeline.preference.assembly import (
    PAIR_COLUMNS,
    SFT_COLUMNS,
    cpo_pairs,
    diagnosis_only_pairs,
    random_negative_pairs,
    sft_examples,
)
from cpo_pipeline.preference.prompt import prompt_hash
from cpo_pipeline.storage import content_hash
from cpo_pipeline_tests.preference.frames import (
    REQUEST,
    VERSIONS,
    counterfactual,
    factual,
    images,
    prepared,
    studies,
    trajectories,
)

CLEAR = "The lungs are clear."
PNEUMONIA = "Focal consolidation in the right lower lobe."


def _one_of_each_problem():
    """Studies 1, 2, 5 and 9 are clean; each other study breaks one rule."""
    rows = trajectories(
        factual(1, CLEAR), counterfactual(1, PNEUMONIA, "Pneumonia"),
        counterfactual(1, "Mild edema.", "Edema", verdict="rejected"),
        factual(2, "Small left effusion.", "Pleural Effusion"),
        counterfactual(2, "No effusion.", "No Finding"),
        counterfactual(2, "Mild edema.", "Edema", verdict="dead_letter"),
        # 3: the same texts as study 1 (exact duplicates); 4: the same up to case and punctuation.
        factual(3, CLEAR), counterfactual(3, PNEUMONIA, "Pneumonia"),
        factual(4, "THE LUNGS ARE CLEAR"), counterfactual(4, PNEUMONIA.upper(), "Pneumonia"),
        factual(5, "Mild edema.", "Edema"), counterfactual(5, CLEAR + " No edema.", "No Finding"),
        # 6: a train text that is also validate study 5's.
        factual(6, "Mild edema.", "Edema"),
        counterfactual(6, "Small effusion.", "Pleural Effusion"),
        # 7: a counterfactual identical to its factual once normalised.
        factual(7, "Moderate edema.  ", "Edema"),
        counterfactual(7, "moderate edema", "Pneumonia", "Edema"),
        factual(8, "Heart is enlarged.", "Cardiomegaly"), counterfactual(8, CLEAR, "No Finding"),
        factual(9, "Small right pneumothorax.", "Pneumothorax"),
        counterfactual(9, "No pneumothorax.", "No Finding"),
        counterfactual(10, PNEUMONIA, "Pneumonia"),  # no factual trajectory
    )
    splits = {1: (101, "train"), 2: (102, "train"), 3: (103, "train"), 4: (104, "train"),
              5: (105, "validate"), 6: (106, "train"), 7: (107, "train"), 8: (108, "train"),
              9: (109, "test"), 10: (110, "train")}
    study_frame = studies(splits)
    image_frame = images(study_frame)
    image_frame = image_frame[image_frame["dicom_id"] != "d8"]  # study 8's image not ingested
    return rows, study_frame, image_frame


def test_cpo_pairs_drop_each_kind_of_bad_pair_and_count_it():
    result = cpo_pairs(prepared(*_one_of_each_problem()), REQUEST)

    assert result.filters == {
        "rows in": 12, "not accepted (rejected or dead letter)": 2, "no text": 0,
        "no factual trajectory": 1, "no image": 1, "chosen equals rejected (normalised)": 1,
        "text also in validate or test": 1, "exact duplicate": 1,
        "near duplicate (same normalised text)": 1, "over the per-disease cap": 0, "kept": 4}
    frame = result.frame
    assert tuple(frame.columns) == PAIR_COLUMNS
    assert list(zip(frame["study_id"], frame["split"], frame["target_disease"], strict=True)) == [
        (1, "train", "Pneumonia"), (2, "train", "No Finding"), (5, "validate", "No Finding"),
        (9, "test", "No Finding")]
    first = frame.iloc[0]
    assert first["chosen"] == (
        "<think> The lungs are clear. </think> The disease of this patient is No Finding.")
    assert first["rejected"].startswith(f"<think> {PNEUMONIA} </think>")
    assert (first["chosen_diagnosis"], first["rejected_diagnosis"]) == ("No Finding", "Pneumonia")
    assert (frame["rejected_study_id"] == frame["study_id"]).all()


def test_sft_examples_drop_each_kind_of_bad_example_and_count_it():
    result = sft_examples(prepared(*_one_of_each_problem()), REQUEST)

    assert result.filters == {
        "rows in": 9, "no text": 0, "no image": 1, "text also in validate or test": 1,
        "exact duplicate": 1, "near duplicate (same normalised text)": 1,
        "over the per-disease cap": 0, "kept": 5}
    assert tuple(result.frame.columns) == SFT_COLUMNS
    assert result.frame["study_id"].tolist() == [1, 2, 7, 5, 9]  # train, validate, test
    assert (result.frame["prompt"] == REQUEST).all()
    assert result.frame["diagnosis"].tolist() == ["No Finding", "Pleural Effusion", "Edema",
                                                  "Edema", "Pneumothorax"]


def test_every_row_carries_its_lineage():
    rows, study_frame, image_frame = _one_of_each_problem()
    frame = cpo_pairs(prepared(rows, study_frame, image_frame), REQUEST).frame
    first = frame.iloc[0]

    assert first["subject_id"] == 101 and first["dicom_id"] == "d1"
    assert first["image_path"] == "/images/1.png"
    assert first["image_sha256"] == content_hash("d1")
    assert first["chosen_trajectory_id"] == content_hash("1\x1ffactual\x1f")[:16]
    assert first["rejected_trajectory_id"] == content_hash("1\x1fcounterfactual\x1fPneumonia")[:16]
    assert (first["expert_backend"], first["expert_model"], first["expert_prompt_hash"]) == (
        "openai-compatible", "expert-llm", "feedfacecafebeef")
    assert (frame["prompt_hash"] == prompt_hash(REQUEST)).all()
    assert (frame["trajectories_version"] == VERSIONS.trajectories).all()
    assert (frame["studies_version"] == VERSIONS.studies).all()
    assert (frame["images_version"] == VERSIONS.images).all()
    assert frame["pair_id"].is_unique


def test_pair_ids_are_stable_across_runs_and_unrelated_studies():
    rows, study_frame, image_frame = _one_of_each_problem()
    before = cpo_pairs(prepared(rows, study_frame, image_frame), REQUEST).frame
    again = cpo_pairs(prepared(rows, study_frame, image_frame), REQUEST).frame
    without_two = cpo_pairs(prepared(rows[rows["study_id"] != 2], study_frame, image_frame),
                            REQUEST).frame
    other_request = cpo_pairs(prepared(rows, study_frame, image_frame), REQUEST + " Now.").frame

    assert again["pair_id"].tolist() == before["pair_id"].tolist()
    kept = before[before["study_id"] != 2]
    assert without_two["pair_id"].tolist() == kept["pair_id"].tolist()
    assert not set(other_request["pair_id"]) & set(before["pair_id"])


def test_a_repeated_trajectory_is_an_error_naming_its_study():
    rows = trajectories(factual(1, CLEAR), counterfactual(1, PNEUMONIA, "Pneumonia"),
                        counterfactual(1, "Consolidation.", "Pneumonia"))

    with pytest.raises(ValueError, match="study 1, counterfactual toward 'Pneumonia'"):
        prepared(rows, studies({1: (101, "train")}))


def test_the_per_disease_cap_limits_train_rows_per_answer():
    rows = trajectories(*(factual(study, f"Clear lungs, view {word}.")
                          for study, word in enumerate("abcdef", start=1)),
                        factual(7, "Mild edema.", "Edema"))
    frame = studies({study: (100 + study, "train") for study in range(1, 8)})

    result = sft_examples(prepared(rows, frame), REQUEST, cap=2, seed=3)

    assert result.filters["over the per-disease cap"] == 4
    assert result.frame["diagnosis"].value_counts().to_dict() == {"No Finding": 2, "Edema": 1}
    again = sft_examples(prepared(rows, frame), REQUEST, cap=2, seed=3)
    assert again.frame["study_id"].tolist() == result.frame["study_id"].tolist()


ANSWERS = ("No Finding", "Edema", "Pleural Effusion", "Cardiomegaly")


def _word(study: int) -> str:
    """A word per study: digits would normalise alike."""
    return "".join("bcdfghjklm"[int(digit)] for digit in str(study))


def _pool(splits: dict[int, tuple[int, str]], answer_of=lambda study: ANSWERS[study % 4]):
    rows = []
    for study in splits:
        answer = answer_of(study)
        rows.append(factual(study, f"Findings of study {_word(study)}.", answer))
        target = "Pneumothorax" if answer != "Pneumothorax" else "Edema"
        rows.append(counterfactual(study, f"Findings of study {_word(study)}: pneumothorax.",
                                   target))
    ready = prepared(trajectories(*rows), studies(splits))
    return cpo_pairs(ready, REQUEST).frame, sft_examples(ready, REQUEST).frame


SPLITS = {**{study: (100 + study // 2, "train") for study in range(1, 41)},
          **{study: (100 + study // 2, "validate") for study in range(41, 51)}}


def test_random_negatives_come_from_another_answer_of_the_same_split():
    pairs, examples = _pool(SPLITS)

    result = random_negative_pairs(pairs, examples, seed=0)
    frame = result.frame

    assert len(frame) == len(pairs) == 50
    assert result.filters == {"rows in": 50, "no study of another answer in the split": 0,
                              "kept": 50}
    assert frame["chosen"].tolist() == pairs["chosen"].tolist()
    assert frame["image_sha256"].tolist() == pairs["image_sha256"].tolist()
    split_of = examples.set_index("study_id")["split"]
    assert (frame["rejected_study_id"].map(split_of) == frame["split"]).all()
    assert (frame["rejected_diagnosis"] != frame["chosen_diagnosis"]).all()
    assert (frame["rejected_study_id"] != frame["study_id"]).all()
    completion_of = examples.set_index("study_id")["completion"]
    assert frame["rejected"].tolist() == frame["rejected_study_id"].map(completion_of).tolist()
    assert frame["target_disease"].isna().all()
    assert (frame["expert_backend"] == "report").all()
    assert frame["rejected_study_id"].nunique() > 10  # drawn, not one favourite


def test_random_negatives_are_deterministic_for_a_seed():
    pairs, examples = _pool(SPLITS)

    first = random_negative_pairs(pairs, examples, seed=5).frame
    again = random_negative_pairs(pairs, examples, seed=5).frame
    other = random_negative_pairs(pairs, examples, seed=6).frame

    pd.testing.assert_frame_equal(first, again)
    assert first["rejected_study_id"].tolist() != other["rejected_study_id"].tolist()


def test_a_split_with_one_answer_gives_no_random_negative_and_says_so():
    splits = {**SPLITS, 61: (161, "test"), 62: (162, "test")}
    pairs, examples = _pool(splits, lambda study: "Edema" if study > 60 else ANSWERS[study % 4])

    result = random_negative_pairs(pairs, examples)

    assert result.filters["no study of another answer in the split"] == 2
    assert len(result.frame) == len(pairs) - 2
    assert "test" not in set(result.frame["split"])


def test_random_negatives_refuse_pairs_and_examples_of_different_inputs():
    pairs, examples = _pool(SPLITS)

    with pytest.raises(ValueError, match="differ in prompt_hash"):
        random_negative_pairs(pairs, examples.assign(prompt_hash="0" * 16))


def test_diagnosis_only_pairs_keep_the_pairs_and_only_their_answer_lines():
    pairs, _ = _pool(SPLITS)

    result = diagnosis_only_pairs(pairs)
    frame = result.frame

    assert result.filters == {"rows in": 50, "chosen equals rejected (normalised)": 0, "kept": 50}
    assert frame["chosen"].tolist() == [f"The disease of this patient is {d}."
                                        for d in pairs["chosen_diagnosis"]]
    assert frame["rejected"].tolist() == ["The disease of this patient is Pneumothorax."] * 50
    assert not frame["chosen"].str.contains("think").any()
    assert frame["study_id"].tolist() == pairs["study_id"].tolist()
    assert frame["rejected_trajectory_id"].tolist() == pairs["rejected_trajectory_id"].tolist()
    assert not set(frame["pair_id"]) & set(pairs["pair_id"])

"""The evaluation runner's split handling: which held-out rows an evaluation reads."""

import pytest
from datasets import Dataset

from cpo_pipeline import data_layout
from cpo_pipeline.evaluation.runner import EvaluationInputError, held_out_pairs, test_rows


def _write(data_root, name, split, ids, column):
    directory = data_layout.dataset(data_root, name) / split
    Dataset.from_dict({column: ids}).save_to_disk(str(directory))


@pytest.fixture
def data_root(tmp_path):
    for split, first in (("train", 0), ("validate", 100), ("test", 200)):
        _write(tmp_path, "sft_dataset", split, [first, first + 1], "study_id")
        _write(tmp_path, "preference_pairs", split, [f"{split}-{i}" for i in range(3)],
               "pair_id")
    return tmp_path


def test_each_held_out_split_reads_its_own_studies_and_pairs(data_root):
    assert [row["study_id"] for row in test_rows(data_root)] == [200, 201]
    assert [row["study_id"] for row in test_rows(data_root, "validate")] == [100, 101]
    assert {row["pair_id"] for row in held_out_pairs(data_root, 0, "validate")} == {
        "validate-0", "validate-1", "validate-2"}
    assert len(held_out_pairs(data_root, 2, "test")) == 2


@pytest.mark.parametrize("split", ["train", "valid", ""])
def test_a_split_that_is_not_held_out_is_refused_by_name(data_root, split):
    with pytest.raises(EvaluationInputError, match=r"split must be one of \('validate', 'test'\)"):
        test_rows(data_root, split)
    with pytest.raises(EvaluationInputError, match="split must be one of"):
        held_out_pairs(data_root, 0, split)


def test_a_missing_split_says_what_to_materialize(tmp_path):
    with pytest.raises(EvaluationInputError, match="no validate studies to evaluate: "
                       r"materialize sft_dataset \(its validate split\)"):
        test_rows(tmp_path, "validate")

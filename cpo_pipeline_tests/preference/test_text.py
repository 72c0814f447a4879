import hashlib

import numpy as np
import pandas as pd
import pytest

from cpo_pipeline.preference.text import ANSWER_PREFIX, answers, normalise, row_ids, text_ids
from cpo_pipeline.radiology.answer_format import TrajectoryFormatError, format_trajectory


def test_normalise_lowercases_numbers_punctuation_and_spaces():
    texts = pd.Series(["Small LEFT effusion, 2.5 cm.\n\tNo  pneumothorax!", "3,000 ml — Édème",
                       None])

    assert normalise(texts).to_pylist() == ["small left effusion 0 cm no pneumothorax",
                                            "0 ml édème", None]


def test_texts_that_differ_only_in_case_punctuation_or_numbers_share_an_id():
    first, second = text_ids(pd.Series(["No effusion.", "Nodule of 4 mm", None]),
                             pd.Series(["no EFFUSION", "Nodule of 12 mm.", "effusion"]))

    assert first[0] == second[0]
    assert first[1] == second[1]
    assert first[2] == -1
    assert second[2] not in (first[0], first[1])  # "effusion" is not "no effusion"


def test_answers_are_the_answer_line_and_its_diagnosis():
    texts = pd.Series([format_trajectory("Blunted angle.", ["Cardiomegaly", "Pleural Effusion"]),
                       format_trajectory("Clear.", ["No Finding"])], index=[7, 9])

    found = answers(texts, pd.DataFrame({"study_id": [1, 2]}, index=[7, 9]))

    assert ANSWER_PREFIX == "The disease of this patient is "
    assert found.index.tolist() == [7, 9]
    assert found["answer"].tolist() == [
        "The disease of this patient is Cardiomegaly and Pleural Effusion.",
        "The disease of this patient is No Finding."]
    assert found["diagnosis"].tolist() == ["Cardiomegaly and Pleural Effusion", "No Finding"]


def test_a_text_out_of_the_answer_format_is_an_error_naming_its_study():
    texts = pd.Series([format_trajectory("Clear.", ["No Finding"]), "The lungs are clear."])
    rows = pd.DataFrame({"study_id": [50000001, 50000002], "kind": ["factual", "counterfactual"],
                         "target_disease": [None, "Edema"]})

    with pytest.raises(TrajectoryFormatError, match=r"study_id 50000002.*'Edema'.*expected"):
        answers(texts, rows)


def test_row_ids_are_the_content_hash_of_the_joined_values():
    ids = row_ids([pd.Series([50000001, 50000002]), pd.Series(["factual", "counterfactual"]),
                   pd.Series([None, "Edema"])])

    expected = [hashlib.sha256(key.encode()).hexdigest()[:16]
                for key in ("50000001\x1ffactual\x1f", "50000002\x1fcounterfactual\x1fEdema")]
    assert ids.tolist() == expected


def test_no_rows_give_no_ids():
    assert row_ids([pd.Series([], dtype=object)]).empty
    assert [len(ids) for ids in text_ids(pd.Series([], dtype=object))] == [0]
    assert isinstance(text_ids(pd.Series(["a"]))[0], np.ndarray)

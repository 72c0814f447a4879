import numpy as np
import pandas as pd

from cpo_pipeline.preference.filters import (
    FilterLog,
    duplicates,
    leaking_into_train,
    not_accepted,
    over_cap,
    same_text,
)
from cpo_pipeline.preference.text import text_ids


def test_the_log_counts_each_filter_on_what_the_previous_ones_left():
    frame = pd.DataFrame({"x": range(6)})
    log = FilterLog(len(frame))

    frame = log.drop("odd", frame, frame["x"] % 2 == 1)
    frame = log.drop("below 3", frame, frame["x"] < 3)

    assert frame["x"].tolist() == [4]
    assert log.counts(len(frame)) == {"rows in": 6, "odd": 3, "below 3": 2, "kept": 1}


def test_rejected_and_dead_letters_are_not_accepted():
    verdicts = pd.DataFrame({"verdict": ["accepted", "rejected", "dead_letter", "accepted"]})

    assert not_accepted(verdicts).tolist() == [False, True, True, False]


def test_duplicates_are_exact_or_near_and_counted_within_a_split():
    texts = ["No effusion.", "No effusion.", "no effusion", "No effusion.", "Edema."]
    frame = pd.DataFrame({"split": ["train", "train", "train", "test", "train"], "text": texts})
    [frame["text_id"]] = text_ids(frame["text"])

    exact, near = duplicates(frame, ["text"], ["text_id"])

    assert exact.tolist() == [False, True, False, False, False]
    assert near.tolist() == [False, False, True, False, False]


def test_leakage_drops_the_train_copy_never_the_held_out_one():
    frame = pd.DataFrame({"split": ["train", "train", "validate", "test"],
                          "chosen_text_id": [1, 2, 1, 3], "rejected_text_id": [7, 3, 8, 9]})
    held_out = np.array([1, 3, 8, 9])

    dropped = leaking_into_train(frame, ["chosen_text_id", "rejected_text_id"], held_out)

    # Row 0 by its chosen, row 1 by its rejected text; held-out rows stay.
    assert dropped.tolist() == [True, True, False, False]


def test_the_per_disease_cap_keeps_a_seeded_draw_of_train_rows_only():
    frame = pd.DataFrame({"split": ["train"] * 6 + ["test"] * 3,
                          "diagnosis": ["No Finding"] * 5 + ["Edema"] + ["No Finding"] * 3})

    first = over_cap(frame, "diagnosis", 2, seed=1)
    again = over_cap(frame, "diagnosis", 2, seed=1)
    other_seeds = {tuple(over_cap(frame, "diagnosis", 2, seed=s)) for s in range(10)}

    assert first.tolist() == again.tolist()
    assert int(first[:5].sum()) == 3  # 5 "No Finding" train rows capped at 2
    assert not first[5] and not first[6:].any()  # Edema under the cap; test rows untouched
    assert len(other_seeds) > 1
    assert not over_cap(frame, "diagnosis", None, seed=1).any()


def test_same_text_compares_the_normalised_ids():
    frame = pd.DataFrame({"chosen_text_id": [1, 2], "rejected_text_id": [1, 3]})

    assert same_text(frame).tolist() == [True, False]

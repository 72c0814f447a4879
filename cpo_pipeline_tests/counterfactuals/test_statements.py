"""The statements an edit writes: shaped like what they replace, else drawn as reports draw theirs."""

import numpy as np

from cpo_pipeline.counterfactuals.statements import denial_statement, target_statement
from cpo_pipeline.radiology.chexpert import LABEL_NEGATIVE, LABEL_POSITIVE
from cpo_pipeline.radiology.labeller import label_report
from cpo_pipeline.radiology.placement import Placement


def asserts(sentence, label):
    return label_report(sentence).get(label) == LABEL_POSITIVE


def test_statements_are_shaped_like_what_they_replace_and_read_back_as_meant():
    rng = np.random.default_rng(0)
    long = target_statement("Pleural Effusion", Placement("left"), rng,
                            "there is a layering right pleural effusion with a meniscus")
    short = target_statement("Pleural Effusion", Placement("left"), rng, "no effusion")
    denial = denial_statement("Pneumothorax", Placement(), rng, "no pneumothorax")

    assert len(long.split()) > len(short.split())
    assert asserts(long, "Pleural Effusion") and asserts(short, "Pleural Effusion")
    assert label_report(denial)["Pneumothorax"] == LABEL_NEGATIVE


def test_an_inserted_statement_is_drawn_as_the_reports_draw_theirs():
    rng = np.random.default_rng(0)
    drawn = [target_statement("Pneumonia", Placement(), rng) for _ in range(600)]

    # One of Pneumonia's four phrasings says "findings are consistent with"; a sign at 25%.
    framed = sum(text.startswith("Findings are consistent with") for text in drawn) / 600
    signed = sum("air bronchograms" in text for text in drawn) / 600
    assert 0.17 < framed < 0.33 and 0.17 < signed < 0.33
    assert all(asserts(text, "Pneumonia") for text in drawn)

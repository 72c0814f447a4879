from dataclasses import replace

import pytest

from cpo_pipeline.counterfactuals.bounds import (
    HardNegativeBounds,
    QualityTargets,
    bounds_description,
    gate_description,
)


def test_the_gate_defaults_are_issue_9s_targets():
    bounds, targets = HardNegativeBounds(), QualityTargets()

    assert (bounds.max_style_accuracy, bounds.length_ratio, bounds.max_longer_share) == (
        targets.max_style_accuracy, targets.length_ratio, targets.max_longer_share)


def test_the_gate_description_quotes_the_defaults_beside_their_names():
    text = gate_description(HardNegativeBounds(), "counterfactual", "factual")

    assert "tells the counterfactual side of a pair at most `max_style_accuracy` (default 0.60)" \
        in text
    assert "at `style_confidence_z` (default 1.645)" in text
    assert "median counterfactual/factual findings word ratio within `length_ratio` (0.9-1.1)" \
        in text
    assert "in at most `max_longer_share` (60%) of pairs (both fixed)" in text


@pytest.mark.parametrize(("changed", "quoted"), [
    ({"max_style_accuracy": 0.55}, "`max_style_accuracy` (default 0.55)"),
    ({"confidence_z": 1.96}, "`style_confidence_z` (default 1.96)"),
    ({"length_ratio": (0.8, 1.25)}, "`length_ratio` (0.8-1.25)"),
    ({"max_longer_share": 0.7}, "`max_longer_share` (70%)"),
])
def test_the_gate_description_follows_each_bound(changed, quoted):
    text = gate_description(replace(HardNegativeBounds(), **changed), "rejected", "chosen")

    assert quoted in text
    assert text != gate_description(HardNegativeBounds(), "rejected", "chosen")


def test_a_check_result_states_the_bounds_the_run_held_and_the_config_that_moves_them():
    bounds = HardNegativeBounds(max_style_accuracy=0.55, confidence_z=0.0)

    assert bounds_description(bounds, "preference_pairs", "rejected") == (
        "bounds: the style accuracy's lower bound at most 0.55 at z 0.0 (`max_style_accuracy`, "
        "`style_confidence_z`, run config of preference_pairs); median word ratio 0.9-1.1 and "
        "the rejected the longer text in at most 60% of pairs (fixed: a length cue is what DPO "
        "would learn instead of the diagnosis)")

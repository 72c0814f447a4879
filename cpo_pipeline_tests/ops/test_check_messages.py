"""A blocking check that fails says, in the run's log and on the check in the UI, the figure it
measured, the bound it held it to, and the run config option that moves the bound (for an
invariant, whose bound is 0: that no option relaxes it, and where to look instead)."""

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from cpo_pipeline.demo.generator import DemoConfig, write_demo_tree
from cpo_pipeline_tests.pipeline import materialize

# (asset, failing check, run config making it fail, the option its message must name)
STRICT_STYLE = {"max_style_accuracy": 0.0, "style_confidence_z": 0.0}
FAILING = [
    ("counterfactual_trajectories", "counterfactuals_are_hard_negatives", STRICT_STYLE,
     "`max_style_accuracy`, `style_confidence_z`, run config of counterfactual_trajectories"),
    ("preference_pairs", "pairs_are_hard_negatives", STRICT_STYLE,
     "`max_style_accuracy`, `style_confidence_z`, run config of preference_pairs"),
]


def _log_text(instance: dg.DagsterInstance, run_id: str) -> str:
    return "\n".join(entry.message for entry in instance.all_logs(run_id))


@pytest.mark.parametrize(("asset", "check", "config", "option"), FAILING,
                         ids=[check for _, check, _, _ in FAILING])
def test_a_failing_gate_states_its_figure_bound_and_option(demo_run, tmp_path, asset, check,
                                                            config, option):
    data_root = demo_run.copy_to(tmp_path / "data")
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(data_root, [asset], run_config={"ops": {asset: {"config": config}}},
                         instance=instance, raise_on_error=False)

    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == check]
    accuracy = evaluation.metadata["style_accuracy"].value
    figure = f"style accuracy {accuracy:.3f}"
    bound = "lower bound at most 0.00 at z 0.0"
    assert not result.success and not evaluation.passed
    for part in (figure, bound, option):
        assert part in evaluation.description, (part, evaluation.description)
    assert evaluation.metadata["style_accuracy_lower_bound"].value == pytest.approx(accuracy)
    # The run's log (what the console prints) carries the same sentence.
    assert evaluation.description in _log_text(instance, result.run_id)


def _split_one_patient_across_two_splits(tree: Path) -> int:
    """One study of a patient with several moved to another split in the official split table."""
    path = tree / "mimic-cxr-2.0.0-split.csv.gz"
    splits = pd.read_csv(path)
    studies = splits.drop_duplicates("study_id")
    subject = studies["subject_id"].value_counts().idxmax()
    study = studies.loc[studies["subject_id"] == subject, "study_id"].iloc[0]
    moved = splits["study_id"] == study
    splits.loc[moved, "split"] = splits.loc[moved, "split"].map(
        {"train": "test", "validate": "train", "test": "train"})
    splits.to_csv(path, index=False, compression={"method": "gzip", "mtime": 0})
    return int(subject)


def test_a_failing_invariant_states_its_figure_that_its_bound_is_zero_and_why_no_option(
        tmp_path):
    tree = tmp_path / "mimic-cxr"
    write_demo_tree(tree, DemoConfig(patients=6, seed=2))
    subject = _split_one_patient_across_two_splits(tree)
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(tmp_path / "data", ["cxr_studies"], mimic_cxr_root=str(tree),
                         instance=instance, raise_on_error=False)

    [evaluation] = [e for e in result.get_asset_check_evaluations()
                    if e.check_name == "no_patient_in_two_splits"]
    assert not result.success and not evaluation.passed
    assert evaluation.metadata["patients_in_several_splits"].value == 1
    assert evaluation.metadata["bound"].value == 0
    for part in (f"1 patients have studies in more than one split (e.g. [{subject}])",
                 "the bound is 0", "no config option relaxes it"):
        assert part in evaluation.description, (part, evaluation.description)
    assert f"no_patient_in_two_splits failed: {evaluation.description}" in _log_text(
        instance, result.run_id)

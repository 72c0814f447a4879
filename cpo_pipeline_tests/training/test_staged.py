"""Staged tuning on the demo chain: the training sets cut by stage, each method tuned stage after
stage through the real launcher (Pipes, TRL), and every stage's model scored on every stage's
test studies."""

import json

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from datasets import load_from_disk

from cpo_pipeline import data_layout
from cpo_pipeline.assets.staged import INITIAL, METHOD_SETS, stage_split
from cpo_pipeline.definitions import defs
from cpo_pipeline.evaluation.classification import (
    ANSWER_LABELS,
    AVERAGE_FIVE,
    EXACT,
    MACRO_F1_FIVE,
    PAPER_FIVE,
    PARSE_RATE,
    correct_matrix,
    reference_answers,
)
from cpo_pipeline.evaluation.staged import (
    backward_transfer,
    forgetting,
    no_finding_floor,
    stage_matrix,
)
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS, NO_FINDING
from cpo_pipeline.resources.rooted import rooted_resources
from cpo_pipeline.training import run_dirs
from cpo_pipeline_tests.pipeline import ASSETS

STAGED = ("staged_training_sets", "staged_models", "staged_evaluation")
_QUIET = {"report_to": "none", "eval_samples": 0, "sample_max_new_tokens": 0}
SFT = {**_QUIET, "max_steps": 6, "tiny_vision_pretraining_epochs": 1}
DPO = {**_QUIET, "max_steps": 2}
EVALUATION = {"max_pairs": 6, "max_new_tokens": 64, "resamples": 50, "probe_studies": 10}


def materialize(data_root, selection, models=None, raise_on_error=True, evaluation=None):
    config = {"staged_models": {"config": {"methods": ["sft", "cpo"], "sft": SFT, "dpo": DPO,
                                           **(models or {})}},
              "staged_evaluation": {"config": {**EVALUATION, **(evaluation or {})}}}
    return dg.materialize(
        [defs.get_assets_def(name) for name in (*ASSETS, *STAGED)],
        resources={**rooted_resources(data_root),
                   "pipes_subprocess_client": dg.PipesSubprocessClient()},
        selection=list(selection), raise_on_error=raise_on_error,
        run_config={"ops": {name: value for name, value in config.items()
                            if name in selection}})


def _metadata(result, asset):
    [materialization] = result.asset_materializations_for_node(asset)
    return {key: value.value for key, value in materialization.metadata.items()}


@pytest.fixture(scope="module")
def staged(demo_run, tmp_path_factory):
    data_root = demo_run.copy_to(tmp_path_factory.mktemp("staged") / "data")
    result = materialize(data_root, STAGED)
    return data_root, result


def _manifest(data_root):
    return json.loads((data_layout.staged_datasets(data_root) / "models.json").read_text())


def test_each_training_set_is_cut_into_its_studies_stages_without_losing_a_row(staged):
    data_root, _ = staged
    studies = pd.read_parquet(data_root / "tables" / "cxr_studies.parquet")
    stage_of = studies.set_index("study_id")["stage"]
    n_stages = int(stage_of.max()) + 1
    assert n_stages == 3
    for dataset in METHOD_SETS.values():
        full = load_from_disk(str(data_layout.dataset(data_root, dataset) / "train"))
        parts = [load_from_disk(str(stage_split(data_root, stage, dataset)))
                 for stage in range(n_stages)]
        for stage, part in enumerate(parts):
            assert len(part) > 0
            assert set(stage_of.loc[part["study_id"]]) == {stage}, (dataset, stage)
        assert sum(len(part) for part in parts) == len(full)
        assert sorted(np.concatenate([part["study_id"] for part in parts])) == sorted(
            full["study_id"])


def test_each_stage_starts_from_the_previous_stage_and_refers_to_the_stage_0_sft_model(staged):
    data_root, _ = staged
    manifest = _manifest(data_root)
    [initial] = manifest["runs"][INITIAL]
    initial_dir = str(run_dirs.model_dir(data_root / initial["run_dir"]))
    assert manifest["runs"]["sft"][0]["data_version"] == initial["data_version"]
    for method in ("sft", "cpo"):
        entries = manifest["runs"][method]
        assert [entry["stage"] for entry in entries] == [0, 1, 2]
        for stage, entry in enumerate(entries):
            summary = run_dirs.read_summary(data_root / entry["run_dir"])
            if method == "sft" and stage == 0:
                continue
            previous = (initial if stage == 0 else entries[stage - 1])["run_dir"]
            assert summary["starting_model"] == str(run_dirs.model_dir(data_root / previous))
            assert summary["dataset_name"] == f"{METHOD_SETS[method]}@stage-{stage}"
            assert summary["dataset_rows"] == len(load_from_disk(
                str(stage_split(data_root, stage, METHOD_SETS[method]))))
            if method == "cpo":
                # Stage 0 starts from the SFT model, its own reference; later stages keep it.
                assert summary["reference_model"] == (None if stage == 0 else initial_dir)
                assert summary["stage"] == "dpo"


def test_an_unchanged_rerun_trains_nothing_and_a_previous_reference_is_new_runs_after_stage_0(
        staged):
    data_root, first = staged
    # SFT on stage 0, continued SFT on stages 1 and 2, CPO on stages 0 to 2.
    assert _metadata(first, "staged_models")["trained_this_run"] == 6
    again = materialize(data_root, ["staged_models"])
    assert _metadata(again, "staged_models")["trained_this_run"] == 0
    assert all(entry["reused"] for entries in _manifest(data_root)["runs"].values()
               for entry in entries)

    before = {e["stage"]: e for e in _manifest(data_root)["runs"]["cpo"]}
    previous = materialize(data_root, ["staged_models"],
                           {"methods": ["cpo"], "reference": "previous"})
    assert _metadata(previous, "staged_models")["trained_this_run"] == 2
    after = {e["stage"]: e for e in _manifest(data_root)["runs"]["cpo"]}
    assert after[0]["run_dir"] == before[0]["run_dir"] and after[0]["reused"]
    for stage in (1, 2):
        assert after[stage]["run_dir"] != before[stage]["run_dir"]
        summary = run_dirs.read_summary(data_root / after[stage]["run_dir"])
        assert summary["reference_model"] is None  # the starting model is the reference
    # Put the fixture's manifest back for the tests that read it after this one.
    materialize(data_root, ["staged_models"])


def test_the_staged_evaluation_scores_every_model_on_every_stage_and_its_figures_recompute(
        staged):
    data_root, result = staged
    metadata = _metadata(result, "staged_evaluation")
    folder = (data_root / metadata["report_path"]).parent
    summary = json.loads((folder / "staged.json").read_text())
    manifest = _manifest(data_root)
    studies = pd.read_parquet(data_root / "tables" / "cxr_studies.parquet").set_index("study_id")
    generations = pd.read_parquet(folder / "generations.parquet")
    test = load_from_disk(str(data_layout.dataset(data_root, "sft_dataset") / "test"))

    assert set(summary["methods"]) == {"sft", "cpo"}
    assert sum(summary["test_studies"].values()) == len(test)
    # Each distinct model answered every test study once: the initial SFT model (which is also
    # sft's stage 0), sft after stages 1 and 2, and cpo after stages 0, 1 and 2.
    assert generations.groupby("model_version")["study_id"].nunique().eq(len(test)).all()
    assert generations["model_version"].nunique() == 6
    for method, figures in summary["methods"].items():
        matrix = pd.DataFrame(figures["matrix"]).T
        matrix.index, matrix.columns = matrix.index.astype(int), matrix.columns.astype(int)
        assert matrix.shape == (3, 3)
        assert ((matrix >= 0) & (matrix <= 1)).all().all()
        assert figures["forgetting"] == pytest.approx(forgetting(matrix))
        assert figures["final_mean"] == pytest.approx(matrix.loc[2].mean())
        # One cell recomputed from the stored answers: after stage 1, on stage 2's studies.
        version = manifest["runs"][method][1]["data_version"]
        rows = generations[generations["model_version"] == version]
        rows = rows[studies.loc[rows["study_id"], "stage"].to_numpy() == 2].reset_index(drop=True)
        labels = studies.loc[rows["study_id"], list(CHEXPERT_LABELS)].reset_index(drop=True)
        correct = correct_matrix(rows, reference_answers(labels))
        five = [ANSWER_LABELS.index(d) for d in PAPER_FIVE]
        assert matrix.loc[1, 2] == pytest.approx(correct[:, five].mean())
        assert metadata[f"{method}/forgetting"] == pytest.approx(figures["forgetting"])
        assert set(figures["probes"]["0"]) >= {"flip rate after a synonym swap",
                                               "reward accuracy"}
        assert pd.DataFrame(figures["exact_matrix"]).shape == (3, 3)
        primary = pd.DataFrame(figures["macro_f1_five_matrix"]).T
        # Undefined (NaN) where a test stage has none of the five and the model names none.
        assert primary.shape == (3, 3)
        assert ((primary >= 0) & (primary <= 1) | primary.isna()).all().all()
        assert metadata[f"{method}/final_mean_macro_f1_five"] == pytest.approx(
            primary.iloc[-1].mean(), nan_ok=True)
        assert ((pd.DataFrame(figures["parse_rate_matrix"]) >= 0).all().all())
    # The floor's exact answer is right exactly on the studies with no positive disease.
    ids = [row["study_id"] for row in test]
    normal = reference_answers(studies.loc[ids, list(CHEXPERT_LABELS)])[NO_FINDING].to_numpy()
    stage_of = studies.loc[ids, "stage"].to_numpy()
    for stage in summary["test_studies"]:
        assert summary["floor"][EXACT][stage] == pytest.approx(
            normal[stage_of == int(stage)].mean())
        # A constant answer names none of the five: its macro-F1 over them is 0 where one of
        # them is present, undefined on a stage that has none.
        five_present = reference_answers(studies.loc[ids, list(CHEXPERT_LABELS)])[
            list(PAPER_FIVE)].to_numpy()[stage_of == int(stage)].any()
        floor_f1 = summary["floor"][MACRO_F1_FIVE][stage]
        assert floor_f1 == 0.0 if five_present else np.isnan(floor_f1)
        assert summary["floor"][PARSE_RATE][stage] == 1.0
    report = (folder / "report.md").read_text()
    assert "## cpo" in report and "## sft" in report and "forgetting" in report
    assert "(the floor)" in report and "## exact answer after each stage" in report
    assert "## macro-F1 (five) after each stage" in report
    assert "## parse rate after each stage" in report
    assert (folder / "accuracy_by_stage.png").read_bytes().startswith(b"\x89PNG")


def test_the_staged_evaluation_is_reused_when_nothing_changed(staged):
    data_root, result = staged
    again = materialize(data_root, ["staged_evaluation"])
    assert _metadata(again, "staged_evaluation")["report_path"] == _metadata(
        result, "staged_evaluation")["report_path"]


def test_an_unknown_method_fails_with_the_choices(staged):
    data_root, _ = staged
    result = materialize(data_root, ["staged_models"], {"methods": ["ppo"]},
                         raise_on_error=False)
    assert not result.success
    [failure] = [event for event in result.all_events if event.is_step_failure]
    assert "methods must be some of ['sft', 'cpo', 'dpo_random', 'cpo_no_cot']" in str(
        failure.event_specific_data.error)


def test_continued_sft_takes_each_stages_cpo_steps_and_a_method_trains_with_its_own_config(
        staged):
    data_root, _ = staged
    initial = _manifest(data_root)["runs"][INITIAL][0]
    # continued_sft leaves max_steps at -1: matched to CPO, whose own config sets 3 steps and
    # a learning rate of its own (dpo's runs take 2 steps at the recipe's rate).
    materialize(data_root, ["staged_models"], {
        "continued_sft": {**_QUIET, "learning_rate": 2e-4},
        "cpo": {**DPO, "max_steps": 3, "learning_rate": 1e-4}})
    runs = _manifest(data_root)["runs"]
    assert list(runs) == [INITIAL, "sft", "cpo"]
    assert [e["global_step"] for e in runs["cpo"]] == [3, 3, 3]
    assert [e["global_step"] for e in runs["sft"]] == [3, 3, 3]
    # Stage 0 is trained too (from the stage-0 SFT model), not the stage-0 SFT model itself.
    assert runs["sft"][0]["data_version"] != initial["data_version"]
    first = run_dirs.read_summary(data_root / runs["sft"][0]["run_dir"])
    assert first["starting_model"] == str(run_dirs.model_dir(data_root / initial["run_dir"]))
    for method, rate in (("sft", 2e-4), ("cpo", 1e-4)):
        for entry in runs[method]:
            config = json.loads((data_root / entry["run_dir"] / run_dirs.RUN_CONFIG).read_text())
            assert config["learning_rate"] == rate, (method, entry["stage"])
    # Put the fixture's manifest back for the tests that read it after this one.
    materialize(data_root, ["staged_models"])


def test_the_staged_evaluation_scores_the_methods_and_stages_asked_for(staged):
    data_root, _ = staged
    runs = _manifest(data_root)["runs"]

    def scored(evaluation):
        metadata = _metadata(materialize(data_root, ["staged_evaluation"],
                                         evaluation=evaluation), "staged_evaluation")
        folder = (data_root / metadata["report_path"]).parent
        generations = pd.read_parquet(folder / "generations.parquet")
        return (set(generations["model_version"]),
                json.loads((folder / "staged.json").read_text()), folder)

    # The stage-0 SFT model alone, on validate: what a gate reads before the rest is scored.
    versions, summary, folder = scored({"methods": [], "split": "validate"})
    assert versions == {runs[INITIAL][0]["data_version"]}
    assert summary["methods"] == {}
    validate = load_from_disk(str(data_layout.dataset(data_root, "sft_dataset") / "validate"))
    assert sum(summary["test_studies"].values()) == len(validate)
    report = (folder / "report.md").read_text()
    assert "validate" in report.splitlines()[0]
    assert "No method was scored: the stage-0 SFT model alone" in report
    assert "| method | final" not in report

    versions, summary, _ = scored({"final_only": True, "methods": ["cpo"]})
    assert versions == {runs[INITIAL][0]["data_version"], runs["cpo"][-1]["data_version"]}
    [(method, figures)] = summary["methods"].items()
    assert method == "cpo"
    assert list(figures["macro_f1_five_matrix"]) == ["2"]
    assert figures["forgetting"] is None and figures["backward_transfer"] is None

    result = materialize(data_root, ["staged_evaluation"], evaluation={"methods": ["dpo_random"]},
                         raise_on_error=False)
    [failure] = [event for event in result.all_events if event.is_step_failure]
    assert "methods ['dpo_random'] were not tuned by staged_models (its manifest has " \
           "['cpo', 'sft'])" in str(failure.event_specific_data.error)


def test_staged_sets_where_older_code_wrote_them_fail_naming_where_they_moved(tmp_path):
    old = tmp_path / "data" / "datasets" / "staged"
    old.mkdir(parents=True)
    (old / "sets.json").write_text('{"stages": 2}')

    result = materialize(tmp_path / "data", ["staged_models"], raise_on_error=False)

    [failure] = [event for event in result.all_events if event.is_step_failure]
    message = str(failure.event_specific_data.error)
    assert f"moved from {old} to {tmp_path / 'data' / 'staged_datasets'}" in message
    assert "re-materialize staged_training_sets" in message


def test_the_no_finding_floor_scores_a_constant_negative_answer_per_stage():
    # Stage 0: a normal study and one with edema; stage 1: pneumonia with consolidation, normal.
    positives = [set(), {"Edema"}, {"Pneumonia", "Consolidation"}, set()]
    reference = pd.DataFrame([{label: label in named for label in ANSWER_LABELS}
                              for named in positives])
    reference[NO_FINDING] = [not named for named in positives]
    floor = no_finding_floor(reference, [0, 0, 1, 1], ["a", "b", "c", "d"],
                             resamples=20, seed=0).set_index(["label", "test_stage"])
    assert floor.loc[(EXACT, 0), "value"] == floor.loc[(EXACT, 1), "value"] == 0.5
    # Of the five: the edema study gets 4 of 5 right, the pneumonia one 3 of 5.
    assert floor.loc[(AVERAGE_FIVE, 0), "value"] == pytest.approx((1 + 0.8) / 2)
    assert floor.loc[(AVERAGE_FIVE, 1), "value"] == pytest.approx((0.6 + 1) / 2)
    assert floor.loc[(PARSE_RATE, 0), "value"] == floor.loc[(PARSE_RATE, 1), "value"] == 1.0
    assert floor.loc[(MACRO_F1_FIVE, 0), "value"] == floor.loc[(MACRO_F1_FIVE, 1), "value"] == 0


def test_forgetting_and_backward_transfer_on_a_known_matrix():
    per_stage = {k: pd.DataFrame({"label": [AVERAGE_FIVE] * 3, "test_stage": [0, 1, 2],
                                  "value": values})
                 for k, values in enumerate([[0.8, 0.5, 0.4], [0.6, 0.9, 0.5],
                                             [0.5, 0.7, 0.9]])}
    matrix = stage_matrix(per_stage)
    assert matrix.loc[1, 0] == 0.6 and matrix.loc[0, 1] == 0.5
    # Stage 0: best before the last 0.8, after the last 0.5; stage 1: 0.9 then 0.7.
    assert forgetting(matrix) == pytest.approx(((0.8 - 0.5) + (0.9 - 0.7)) / 2)
    assert backward_transfer(matrix) == pytest.approx(((0.5 - 0.8) + (0.7 - 0.9)) / 2)
    assert forgetting(matrix.iloc[:1, :1]) is None

"""A whole model evaluation on the tiny offline model: answers, scores, probes, rewards."""

from cpo_pipeline.concepts.ontology import load_ontology
from cpo_pipeline.evaluation.classification import ANSWER_LABELS
from cpo_pipeline.evaluation.drift import synonym_pairs
from cpo_pipeline.evaluation.evaluate import EvaluationOptions, evaluate_model
from cpo_pipeline.radiology.answer_format import format_trajectory
from cpo_pipeline_tests.evaluation.conftest import ANSWERS, example


def pair(folder, seed):
    row = example(folder, seed)
    return {"prompt": row["messages"][:1], "images": row["images"], "pair_id": f"p{seed}",
            "study_id": row["study_id"], "subject_id": row["subject_id"],
            "chosen": [{"role": "assistant", "content": ANSWERS[0]}],
            "rejected": [{"role": "assistant", "content": format_trajectory(
                "Small left pneumothorax.", ["Pneumothorax"])}]}


def test_a_model_evaluation_fills_every_table(tiny_dir, tmp_path):
    test = [example(tmp_path, seed) for seed in range(3)]
    pairs = [pair(tmp_path, seed) for seed in range(2)]

    result = evaluate_model(tiny_dir, test, pairs=pairs, reference_dir=tiny_dir,
                            synonym_pairs=synonym_pairs(load_ontology()),
                            options=EvaluationOptions(max_new_tokens=16, batch_size=2))

    assert list(result.answers["study_id"]) == [100, 101, 102]
    assert set(ANSWER_LABELS) <= set(result.scores.columns) and len(result.scores) == 3
    assert (result.scores[list(ANSWER_LABELS)] < 0).all().all()
    # Against itself as the reference, a model's reward margin is exactly zero.
    assert (result.pairs["reward_margin"].abs() < 1e-6).all()
    assert (result.pairs["logp_chosen"] == result.pairs["ref_logp_chosen"]).all()
    assert set(result.pairs["chosen_led_to"]) <= set(ANSWER_LABELS)
    assert list(result.pairs["rejected_states"]) == ["Pneumothorax", "Pneumothorax"]


def test_the_report_puts_ours_beside_the_paper_s_in_every_section(tiny_dir, tmp_path):
    import pandas as pd

    from cpo_pipeline.concepts.mentions import ConceptExtractor
    from cpo_pipeline.evaluation.report import FloorFigures, model_figures, report_markdown
    from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS

    ontology = load_ontology()
    test = [example(tmp_path, seed) for seed in range(4)]
    evaluation = evaluate_model(tiny_dir, test, pairs=[pair(tmp_path, 0)],
                                reference_dir=tiny_dir, synonym_pairs=synonym_pairs(ontology),
                                options=EvaluationOptions(max_new_tokens=12))
    labels = pd.DataFrame([dict.fromkeys(CHEXPERT_LABELS) | (
        {"Pleural Effusion": 1.0} if seed % 2 == 0 else {"No Finding": 1.0})
        for seed in range(4)])
    findings = ["Small left pleural effusion.", "The lungs are clear."] * 2

    figures = model_figures(evaluation, labels, findings, ontology, ConceptExtractor(ontology),
                            resamples=50, meteor=False)
    floor = FloorFigures.of(labels, ["a", "a", "b", "b"], resamples=50)
    report = report_markdown({"cpo_model": figures}, studies=4, patients=2, floor=floor)

    accuracy = figures.accuracy.set_index("label")
    # An untrained tiny model's answers rarely parse; unparsed answers count as wrong.
    unparsed = int(accuracy["unparsed"].iloc[0])
    assert accuracy.loc["Pneumothorax", "accuracy"] == (4 - unparsed) / 4
    assert figures.probes["reward accuracy"] == 0.0  # a margin of exactly 0 is not a win
    # The floor: "No Finding" everywhere is right on the two normal studies and names no
    # effusion (F1 0 for it, 2/3 for No Finding; the other labels are absent, so undefined);
    # each patient has one study of each kind, so every resample gives the same figures.
    assert ("| every answer 'No Finding' (the floor) | 0.0 [0.0, 0.0] | 33.3 [33.3, 33.3] | "
            "50.0 [50.0, 50.0] | 50.0 [50.0, 50.0] | 50.0 [50.0, 50.0] | 100.0 [100.0, 100.0] |"
            in report), report
    for section in ("## Answer lines", "## Disease classification", "## Per-label ROC AUC",
                    "## Clinical efficacy", "## Findings text", "## Preference and drift"):
        assert section in report
    assert "| cpo_model (paper, real data) | 77.7 | 72.7 | 87.4 | 95.8 | 75.3 | 81.8 | - |" in report


def test_the_likelihood_probes_can_cover_the_first_studies_only(tiny_dir, tmp_path):
    import pandas as pd

    from cpo_pipeline.concepts.mentions import ConceptExtractor
    from cpo_pipeline.evaluation.report import model_figures
    from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS

    ontology = load_ontology()
    test = [example(tmp_path, seed) for seed in range(4)]
    evaluation = evaluate_model(tiny_dir, test, synonym_pairs=synonym_pairs(ontology),
                                options=EvaluationOptions(max_new_tokens=8, probe_studies=2))
    labels = pd.DataFrame([dict.fromkeys(CHEXPERT_LABELS) | {"Pleural Effusion": 1.0}] * 4)

    figures = model_figures(evaluation, labels, ["Small left pleural effusion."] * 4, ontology,
                            ConceptExtractor(ontology), resamples=20, meteor=False)

    assert len(evaluation.answers) == 4  # every study is answered
    assert list(evaluation.scores["study_id"]) == [100, 101]
    assert set(evaluation.swaps["study_id"]) <= {100, 101}
    effusion = figures.auc.set_index("label").loc["Pleural Effusion"]
    assert (effusion["positives"], effusion["negatives"]) == (2, 0)

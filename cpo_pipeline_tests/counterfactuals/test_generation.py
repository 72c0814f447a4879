"""Trajectory generation with the offline expert and with an LLM behind a real local
OpenAI-compatible server (a scripted radiologist answering the project's own prompt)."""


import pandas as pd
import pytest

from cpo_pipeline.concepts.graph import build_concept_graph
from cpo_pipeline.concepts.mentions import ConceptExtractor
from cpo_pipeline.concepts.ontology import load_ontology
from cpo_pipeline.counterfactuals.generation import (
    EditBalance,
    GenerationOptions,
    StudyInput,
    dead_letter_fraction,
    edit_balance,
    edit_kinds,
    generate_trajectories,
    plan_counterfactuals,
)
from cpo_pipeline.llm.client import EndpointConfig, RequestCounters
from cpo_pipeline.llm.response_cache import ResponseCache
from cpo_pipeline.radiology.answer_format import format_trajectory, parse_trajectory
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS
from cpo_pipeline.settings import Secret
from cpo_pipeline.testing.openai_server import Fault, FaultKind, OpenAICompatibleServer
from cpo_pipeline.testing.scripted_expert import answer_counterfactual_prompt, prompt_findings

ONTOLOGY = load_ontology()
GRAPH = build_concept_graph(ONTOLOGY)
EXTRACTOR = ConceptExtractor(ONTOLOGY)


def study(study_id, findings, **positive):
    labels = dict.fromkeys(CHEXPERT_LABELS)
    labels.update({name.replace("_", " "): value for name, value in positive.items()})
    return StudyInput(10_000_000 + study_id, 50_000_000 + study_id, "train", findings, labels)


STUDIES = [
    study(1, "The heart is moderately enlarged. No pleural effusion or pneumothorax.",
          Cardiomegaly=1.0, Pleural_Effusion=0.0, Pneumothorax=0.0),
    study(2, "Small right apical pneumothorax with absent lung markings. Lungs otherwise clear.",
          Pneumothorax=1.0),
    study(3, "Moderate left pleural effusion. Heart size is normal.", Pleural_Effusion=1.0,
          Cardiomegaly=0.0),
]


def endpoint(server, **overrides):
    fast = {"timeout_s": 2.0, "backoff_base_s": 0.01, "backoff_cap_s": 0.05, "max_attempts": 2}
    return EndpointConfig(server.base_url, "cpo-test-model", api_key=Secret("sk-test"),
                          **{**fast, **overrides})


@pytest.fixture
def cache(tmp_path):
    with ResponseCache(tmp_path / "responses.sqlite") as opened:
        yield opened


def test_every_study_gets_one_factual_and_k_counterfactuals_toward_graph_targets():
    table = generate_trajectories(STUDIES, GRAPH, EXTRACTOR, GenerationOptions(k=2))

    assert table.groupby("study_id")["kind"].apply(list).tolist() == [
        ["factual", "counterfactual", "counterfactual"]] * 3
    factual = table[table["kind"] == "factual"].set_index("study_id")
    assert factual.loc[50_000_001, "text"] == (
        "<think> The heart is moderately enlarged. No pleural effusion or pneumothorax. "
        "</think> The disease of this patient is Cardiomegaly.")
    targets = table[table["study_id"] == 50_000_001]["target_disease"].dropna().tolist()
    # The most related first (edema, cardiomegaly's graph neighbour), then its deletion.
    assert "Edema" in targets and len(set(targets)) == 2 and "Cardiomegaly" not in targets


def test_offline_counterfactuals_are_verified_and_name_their_expert():
    table = generate_trajectories(STUDIES, GRAPH, EXTRACTOR, GenerationOptions(k=2))
    counterfactual = table[table["kind"] == "counterfactual"]

    assert (counterfactual["expert_backend"] == "offline-concept-graph").all()
    assert (counterfactual["verdict"] == "accepted").all(), counterfactual["verdict_reason"]
    edema = counterfactual[(counterfactual["study_id"] == 50_000_001)
                           & (counterfactual["target_disease"] == "Edema")].iloc[0]
    parsed = parse_trajectory(edema["text"])
    assert parsed.diagnoses == ("Edema",)
    assert "enlarged" not in parsed.findings
    assert parsed.findings.endswith(" No pleural effusion or pneumothorax.")
    assert edema["source_diagnosis"] == "Cardiomegaly"
    assert 0 < edema["edit_tokens"] <= 24


def test_the_llm_expert_answers_through_the_openai_protocol(cache):
    with OpenAICompatibleServer(responder=answer_counterfactual_prompt) as server:
        counters = RequestCounters()
        table = generate_trajectories(STUDIES, GRAPH, EXTRACTOR, GenerationOptions(k=2),
                                      endpoint=endpoint(server), cache=cache, counters=counters)
        sent = len(server.chat_requests)
        authorization = server.chat_requests[0].headers["authorization"]

    counterfactual = table[table["kind"] == "counterfactual"]
    assert sent == counters.requests_sent == len(counterfactual) == 6
    assert authorization == "Bearer sk-test"
    assert (counterfactual["verdict"] == "accepted").all(), counterfactual["verdict_reason"]
    assert (counterfactual["expert_backend"] == "openai-compatible").all()
    assert (counterfactual["expert_model"] == "cpo-test-model").all()
    assert (counterfactual["prompt_tokens"] > 0).all()
    assert counterfactual["prompt_hash"].nunique() == 1


def test_a_rejected_candidate_is_asked_for_again_with_the_reason(cache):
    def stubborn_then_right(messages):
        if len(messages) == 2:  # first candidate: repeats the factual findings unchanged
            return format_trajectory(prompt_findings(messages[1]["content"]), ["Edema"])
        assert messages[-1]["content"].startswith("That answer was rejected:")
        return answer_counterfactual_prompt(messages[:2])

    with OpenAICompatibleServer(responder=stubborn_then_right) as server:
        table = generate_trajectories(STUDIES[:1], GRAPH, EXTRACTOR, GenerationOptions(k=1),
                                      endpoint=endpoint(server), cache=cache)
        sent = len(server.chat_requests)

    row = table[table["kind"] == "counterfactual"].iloc[0]
    assert sent == 2
    assert row["verdict"] == "accepted" and row["attempts"] == 2


def test_candidates_still_wrong_after_the_bound_are_recorded_as_rejected(cache):
    unchanged = lambda messages: format_trajectory("The heart is enlarged.", ["Cardiomegaly"])
    with OpenAICompatibleServer(responder=unchanged) as server:
        table = generate_trajectories(STUDIES[:1], GRAPH, EXTRACTOR,
                                      GenerationOptions(k=1, max_candidates=3),
                                      endpoint=endpoint(server), cache=cache)
        sent = len(server.chat_requests)

    row = table[table["kind"] == "counterfactual"].iloc[0]
    assert sent == 3
    assert (row["verdict"], row["attempts"]) == ("rejected", 3)
    assert row["verdict_reason"].startswith("labeller does not find")
    assert dead_letter_fraction(table) == 1.0


def test_garbage_completions_become_dead_letters_without_failing_the_batch(cache):
    garbage_for_study_2 = lambda request: (
        Fault(FaultKind.GARBAGE_BODY) if "Small right apical pneumothorax" in request.prompt else None)
    with OpenAICompatibleServer(responder=answer_counterfactual_prompt, faults=garbage_for_study_2) as server:
        table = generate_trajectories(STUDIES, GRAPH, EXTRACTOR, GenerationOptions(k=2),
                                      endpoint=endpoint(server), cache=cache)

    verdicts = table[table["kind"] == "counterfactual"].groupby("study_id")["verdict"].apply(set)
    assert verdicts[50_000_002] == {"dead_letter"}
    assert verdicts[50_000_001] == verdicts[50_000_003] == {"accepted"}
    dead = table[table["verdict"] == "dead_letter"].iloc[0]
    assert pd.isna(dead["text"]) and dead["verdict_reason"].startswith("dead letter:")


def test_a_rerun_after_a_failed_run_asks_only_for_what_was_never_answered(cache):
    down_for_study_3 = lambda request: (
        Fault(FaultKind.HTTP_ERROR, status=503) if "Moderate left pleural" in request.prompt
        else None)
    with OpenAICompatibleServer(responder=answer_counterfactual_prompt, faults=down_for_study_3) as server:
        generate_trajectories(STUDIES, GRAPH, EXTRACTOR, GenerationOptions(k=2),
                              endpoint=endpoint(server), cache=cache)
    with OpenAICompatibleServer(responder=answer_counterfactual_prompt) as server:
        table = generate_trajectories(STUDIES, GRAPH, EXTRACTOR, GenerationOptions(k=2),
                                      endpoint=endpoint(server), cache=cache)
        prompts = [request.prompt for request in server.chat_requests]

    assert len(prompts) == 2 and all("Moderate left pleural" in p for p in prompts)
    assert (table[table["kind"] == "counterfactual"]["verdict"] == "accepted").all()


def test_a_fully_cached_rerun_sends_no_request(cache):
    with OpenAICompatibleServer(responder=answer_counterfactual_prompt) as server:
        first = generate_trajectories(STUDIES, GRAPH, EXTRACTOR, GenerationOptions(k=2),
                                      endpoint=endpoint(server), cache=cache)
        before = len(server.chat_requests)
        again = generate_trajectories(STUDIES, GRAPH, EXTRACTOR, GenerationOptions(k=2),
                                      endpoint=endpoint(server), cache=cache)
        after = len(server.chat_requests)

    assert before == 6 and after == before
    pd.testing.assert_frame_equal(first, again)


def test_plans_replace_the_diagnosis_most_related_to_the_target():
    [task] = plan_counterfactuals(STUDIES[0], GRAPH, EXTRACTOR, k=1)

    assert (task.source, task.target) == ("Cardiomegaly", "Edema")
    assert {step.concept for step in task.plan.add} >= {"pulmonary vascular congestion"}


def test_source_diagnosis_names_what_is_replaced_and_is_null_when_the_target_only_joins():
    opacity = study(9, "Patchy airspace opacity in the right lower lobe.", Lung_Opacity=1.0)
    normal = study(10, "The lungs are clear. Heart size is normal.", No_Finding=1.0)

    table = generate_trajectories([opacity, normal], GRAPH, EXTRACTOR, GenerationOptions(k=12))
    counterfactual = table[table["kind"] == "counterfactual"]
    implies_opacity = {"Atelectasis", "Consolidation", "Edema", "Lung Lesion", "Pneumonia"}

    rows = counterfactual[counterfactual["study_id"] == opacity.study_id]
    assert set(rows["target_disease"]) & implies_opacity and set(rows["target_disease"]) - implies_opacity
    for row in rows.itertuples():
        if row.target_disease in implies_opacity:
            assert pd.isna(row.source_diagnosis), row.target_disease
        else:
            assert row.source_diagnosis == "Lung Opacity", row.target_disease
    assert (counterfactual.loc[counterfactual["study_id"] == normal.study_id, "source_diagnosis"]
            == "No Finding").all()


def graph_of(studies, normal, levels=None):
    extra = {} if levels is None else {"studies_by_diseases": levels}
    return build_concept_graph(ONTOLOGY, studies=studies, normal_studies=normal, **extra)


@pytest.mark.parametrize(
    ("levels", "insertions", "deletions"),
    [
        # Half normal, a third with one disease: 200 of the 300 normal studies' insertions
        # meet the 200 one-disease studies' deletions; 100 of those studies gain a second
        # disease as the 100 two-disease studies each lose one.
        ([300, 200, 100], (2 / 3, 0.5, 0.0), (0.0, 1.0, 1.0)),
        # Few normal studies: each takes two insertions, so a quarter of the one-disease
        # studies delete; one insertion in eight there meets the two-disease deletions.
        ([50, 400, 50], (2.0, 0.125, 0.0), (0.0, 0.25, 1.0)),
        # No normal study: nothing can reach level 0, so nothing leaves level 1 downward.
        ([0, 10, 10], (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    ],
)
def test_insertions_and_deletions_balance_level_by_level(levels, insertions, deletions):
    balance = edit_balance(graph_of(sum(levels), levels[0], levels), k=2)

    assert balance.insertions == pytest.approx(insertions)
    assert balance.deletions == pytest.approx(deletions)
    for n in range(len(levels) - 1):  # as many studies go up from n as come down to it
        assert (balance.insertion_rate(n) * levels[n]
                == pytest.approx(balance.deletion_rate(n + 1) * levels[n + 1]))
    assert balance.insertion_rate(len(levels)) == balance.deletion_rate(len(levels)) == 0.0


@pytest.mark.parametrize(
    ("studies", "normal", "insertions", "deletions"),
    [
        (300, 100, (2.0,), (0.0, 1.0)),        # read as 100 normal and 200 one-disease studies
        (500, 50, (2.0,), (0.0, 100 / 450)),   # normal studies are the bottleneck
        (0, 0, (2.0,), (0.0, 1.0)),            # the graph does not say: a third is assumed
    ],
)
def test_a_graph_without_levels_is_read_as_normal_and_one_disease_studies(
        studies, normal, insertions, deletions):
    balance = edit_balance(graph_of(studies, normal), k=2)

    assert balance.insertions[:1] == pytest.approx(insertions)
    assert balance.deletions == pytest.approx(deletions)


def test_a_diseased_study_gets_a_target_then_the_deletion_of_one_of_its_diseases():
    effusion = study(11, "Moderate left pleural effusion. Mild bibasilar atelectasis.",
                     Pleural_Effusion=1.0, Atelectasis=1.0)

    replacing, deletion = plan_counterfactuals(
        effusion, GRAPH, EXTRACTOR, k=2, balance=EditBalance((2.0, 0.0, 0.0), (0.0, 1.0, 1.0)))

    assert replacing.target != "No Finding" and replacing.source in ("Pleural Effusion",
                                                                     "Atelectasis")
    # The deletion takes the other disease, so the two counterfactuals differ in what goes.
    assert deletion.target == "No Finding"
    assert {deletion.source, replacing.source} == {"Pleural Effusion", "Atelectasis"}
    assert deletion.answer == tuple(d for d in effusion.diagnoses if d != deletion.source)


def test_an_insertion_into_a_diseased_study_keeps_its_diseases_beside_the_deletion():
    effusion = study(13, "Moderate left pleural effusion. No pneumothorax. Heart size is normal.",
                     Pleural_Effusion=1.0, Pneumothorax=0.0, Cardiomegaly=0.0)
    balance = EditBalance((2.0, 1.0), (0.0, 1.0))

    inserted, deletion = plan_counterfactuals(effusion, GRAPH, EXTRACTOR, k=2, balance=balance)

    assert inserted.source is None and inserted.target not in ("Pleural Effusion", "No Finding")
    assert inserted.answer == tuple(sorted(("Pleural Effusion", inserted.target)))
    assert (deletion.source, deletion.target) == ("Pleural Effusion", "No Finding")
    # Verified like every other counterfactual: the effusion stays, the target is asserted.
    table = generate_trajectories([effusion], graph_of(3, 1, [1, 1, 1]), EXTRACTOR,
                                  GenerationOptions(k=2))
    rows = table[(table["kind"] == "counterfactual") & table["source_diagnosis"].isna()]
    [row] = rows.itertuples()
    assert row.verdict == "accepted"
    assert "Pleural Effusion" in parse_trajectory(row.text).diagnoses


def test_a_deletion_of_the_only_disease_answers_no_finding_and_is_verified():
    effusion = study(12, "Moderate left pleural effusion. Heart size is normal.",
                     Pleural_Effusion=1.0, Cardiomegaly=0.0)

    # Two thirds normal: one insertion per normal study, and every diseased study deletes.
    table = generate_trajectories([effusion], graph_of(300, 200), EXTRACTOR,
                                  GenerationOptions(k=1))
    [row] = table[table["kind"] == "counterfactual"].itertuples()

    assert (row.source_diagnosis, row.target_disease, row.verdict) == (
        "Pleural Effusion", "No Finding", "accepted")
    assert parse_trajectory(row.text).diagnoses == ("No Finding",)
    assert "Heart size is normal." in row.findings and "Moderate left" not in row.findings


def test_a_normal_study_gets_only_insertions_drawn_among_every_disease():
    normal = [study(100 + i, "The lungs are clear. Heart size is normal.", No_Finding=1.0)
              for i in range(60)]

    tasks = [task for s in normal
             for task in plan_counterfactuals(s, GRAPH, EXTRACTOR, k=2,
                                              balance=EditBalance((1.0,), ()))]

    assert len(tasks) == 60 and all(task.source is None for task in tasks)
    assert len({task.target for task in tasks}) == 12


def test_each_counterfactual_row_is_an_insertion_a_replacement_or_a_deletion():
    table = pd.DataFrame({
        "kind": ["factual", "counterfactual", "counterfactual", "counterfactual",
                 "counterfactual"],
        "source_diagnosis": ["Atelectasis", "No Finding", None, "Atelectasis", "Atelectasis"],
        "target_disease": [None, "Edema", "Pneumonia", "Edema", "No Finding"],
    })

    assert edit_kinds(table).tolist() == ["insertion", "insertion", "replacement", "deletion"]

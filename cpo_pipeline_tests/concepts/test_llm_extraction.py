import json
from dataclasses import replace

import pytest

from cpo_pipeline.concepts.graph import build_concept_graph
from cpo_pipeline.concepts.llm_extraction import (
    CompletionUnavailable,
    ReplyError,
    ReportBatches,
    SkippedBatch,
    extract_with_llm,
    extraction_messages,
    parse_reply,
    prompt_sha256,
    report_batches,
)
from cpo_pipeline.concepts.ontology import ASSOCIATION, LLM, load_ontology

MODEL = "radiologist-7b"
REPORTS = [
    "Blunting of the left costophrenic angle with a meniscus. Small left effusion.",
    "Moderate left pleural effusion with a meniscus sign.",
    "Perihilar haze and Kerley lines, consistent with edema.",
    "Right upper lobe opacity.",
]
BATCHES = [REPORTS[:2], REPORTS[2:]]


@pytest.fixture(scope="module")
def ontology():
    return load_ontology()


def _reply(*reports: tuple[list[str], list[str]], mapping: dict | None = None) -> str:
    return json.dumps({
        "reports": [{"diseases": d, "features": f} for d, f in reports],
        "disease_feature_map": mapping or {},
    })


class FakeModel:
    """Answers batch after batch from a script; records what it was asked."""

    def __init__(self, *replies: str | Exception) -> None:
        self.replies = list(replies)
        self.asked: list[list[dict[str, str]]] = []

    def __call__(self, messages: list[dict[str, str]]) -> str:
        self.asked.append(messages)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


EFFUSION_BATCH = _reply(
    (["Pleural Effusion"], ["blunted costophrenic angle", "Meniscus"]),
    (["pleural effusion"], ["meniscus sign", "tree-in-bud"]),
    mapping={"Pleural Effusion": ["blunted costophrenic angle", "meniscus sign", "Meniscus"]},
)
EDEMA_BATCH = _reply(
    (["Edema"], ["perihilar haziness", "Kerley lines"]),
    ([], []),
    mapping={"Edema": ["perihilar haze", "Kerley B lines"]},
)


def test_the_prompt_asks_a_senior_radiologist_for_normalised_terms_as_json(ontology):
    system, user = extraction_messages(REPORTS[:2], ontology)

    assert system["role"] == "system" and user["role"] == "user"
    assert system["content"].startswith("You are a senior chest radiologist")
    assert "RadLex or Fleischner Society glossary term" in system["content"]
    assert "Kerley B lines" in system["content"] and "Pneumothorax" in system["content"]
    assert '"disease_feature_map"' in system["content"]
    assert user["content"] == (
        f"2 reports follow.\n\nReport 1:\n{REPORTS[0]}\n\nReport 2:\n{REPORTS[1]}")


def test_a_reply_maps_features_to_diseases_as_llm_edges_with_the_model_name(ontology):
    model = FakeModel(EFFUSION_BATCH, EDEMA_BATCH)

    result = extract_with_llm(BATCHES, model, ontology, MODEL, min_reports=1)

    edges = {(e.source, e.target): e for e in result.edges}
    meniscus = edges[("Pleural Effusion", "meniscus sign")]
    assert (meniscus.relation, meniscus.provenance, meniscus.model) == (ASSOCIATION, LLM, MODEL)
    assert (meniscus.weight, meniscus.support) == (1.0, 2)
    assert meniscus.rationale == ("radiologist-7b mapped meniscus sign to Pleural Effusion in 2 of "
                                  "2 reports naming Pleural Effusion")
    assert edges[("Pleural Effusion", "blunted costophrenic angle")].weight == 0.5
    assert set(edges) == {("Pleural Effusion", "meniscus sign"),
                          ("Pleural Effusion", "blunted costophrenic angle"),
                          ("Edema", "perihilar haze"), ("Edema", "Kerley B lines")}
    assert result.unmapped == {"attribute: tree-in-bud": 1}
    assert (result.batches, result.skipped) == (2, [])


def test_llm_edges_merge_into_the_graph_beside_the_seed(ontology):
    result = extract_with_llm(BATCHES, FakeModel(EFFUSION_BATCH, EDEMA_BATCH), ontology, MODEL,
                              min_reports=1)

    graph = build_concept_graph(ontology, result.edges)

    assert set(graph["Pleural Effusion"]["meniscus sign"]) == {"association/seed",
                                                               "association/llm"}
    assert graph["Pleural Effusion"]["meniscus sign"]["association/llm"]["model"] == MODEL


def test_a_reply_that_is_not_json_skips_its_batch_and_is_recorded(ontology):
    model = FakeModel("Sure! The patient has an effusion.", EDEMA_BATCH)

    result = extract_with_llm(BATCHES, model, ontology, MODEL, min_reports=1)

    assert result.skipped == [SkippedBatch(
        batch=0, first_report=0, reports=2,
        reason="not valid JSON at line 1 column 1: Expecting value")]
    assert {(e.source, e.target) for e in result.edges} == {("Edema", "perihilar haze"),
                                                           ("Edema", "Kerley B lines")}


def test_a_failed_completion_skips_its_batch_and_is_recorded(ontology):
    model = FakeModel(EFFUSION_BATCH, CompletionUnavailable("no acceptable completion: timeout"))

    result = extract_with_llm(BATCHES, model, ontology, MODEL, min_reports=1)

    assert [(s.batch, s.first_report, s.reason) for s in result.skipped] == [
        (1, 2, "no acceptable completion: timeout")]
    assert len(result.edges) == 2


def test_an_edge_needs_min_reports(ontology):
    result = extract_with_llm(BATCHES, FakeModel(EFFUSION_BATCH, EDEMA_BATCH), ontology, MODEL,
                              min_reports=2)

    assert [(e.source, e.target) for e in result.edges] == [("Pleural Effusion", "meniscus sign")]


def test_a_reply_inside_a_json_fence_is_accepted():
    reply = parse_reply("```json\n" + _reply((["Edema"], ["cephalization"])) + "\n```", 1)

    assert reply.reports[0].features == ("cephalization",)


REPLY_ERRORS = {
    "not an object": ("[1, 2]", "expected a JSON object, got list"),
    "no map": ('{"reports": []}', "missing key 'disease_feature_map'"),
    "one report short": (_reply((["Edema"], [])), "reports: expected a list of 2 entries, got 1"),
    "features not a list": (
        ('{"reports": [{"diseases": [], "features": "haze"}, {"diseases": [], "features": []}],'
         ' "disease_feature_map": {}}'),
        'reports[0].features: expected a list of strings, got "haze"'),
    "map values not lists": (
        _reply(([], []), ([], []), mapping={"Edema": "haze"}),
        "disease_feature_map['Edema']: expected a list of strings"),
}


@pytest.mark.parametrize(("text", "message"), REPLY_ERRORS.values(), ids=REPLY_ERRORS.keys())
def test_a_reply_of_the_wrong_shape_names_the_place(text, message):
    with pytest.raises(ReplyError) as raised:
        parse_reply(text, 2)

    assert str(raised.value).startswith(message)


def test_the_prompt_hash_changes_with_the_vocabulary_it_lists(ontology):
    smaller = replace(ontology, concepts=tuple(c for c in ontology.concepts
                                               if c.name != "cephalization"))

    assert prompt_sha256(ontology) == prompt_sha256(load_ontology())
    assert prompt_sha256(smaller) != prompt_sha256(ontology)


def test_a_first_run_cuts_the_first_reports_by_study_id_into_batches():
    batches = report_batches([11, 12, 13, 14, 15, 16, 17, 18], limit=7, batch_size=3)

    assert batches == ReportBatches(3, ((11, 12, 13), (14, 15, 16), (17,)))


def test_added_studies_form_new_batches_and_the_earlier_ones_stay_as_they_were():
    earlier = report_batches([20, 30, 40, 50, 60], limit=256, batch_size=2)

    grown = report_batches([10, 20, 30, 35, 40, 50, 60, 70], 256, 2, earlier)

    assert earlier.batches == ((20, 30), (40, 50), (60,))
    assert grown.batches == ((20, 30), (40, 50), (60,), (10, 35), (70,))


def test_a_study_that_is_gone_leaves_its_batch_and_the_limit_counts_the_earlier_batches_first():
    earlier = ReportBatches(2, ((20, 30), (40, 50), (60,)))

    assert report_batches([10, 20, 40, 50, 60], 256, 2, earlier).batches == (
        (20,), (40, 50), (60,), (10,))
    assert report_batches([10, 20, 30, 40, 50, 60], 3, 2, earlier).batches == ((20, 30), (40,))


def test_another_batch_size_forms_the_batches_afresh():
    earlier = ReportBatches(2, ((20, 30), (40, 50), (60,)))

    assert report_batches([10, 20, 30, 40, 50, 60], 256, 3, earlier).batches == (
        (10, 20, 30), (40, 50, 60))


def test_the_batches_read_back_from_their_json():
    batches = ReportBatches(8, ((20, 30), (60,)))

    assert ReportBatches.from_json(batches.to_json()) == batches


class ReadingNothing:
    """A model that finds no concept in any batch (valid JSON); records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[list[dict[str, str]]] = []

    def __call__(self, messages: list[dict[str, str]]) -> str:
        self.asked.append(messages)
        reports = int(messages[-1]["content"].split(" reports follow")[0])
        return _reply(*([([], [])] * reports))


def test_a_refresh_asks_the_earlier_batches_in_the_same_words_and_only_new_reports_anew(
        ontology):
    texts = {study: f"Study {study}: small left pleural effusion." for study in range(1, 15)}
    old, added = [1, 3, 4, 6, 7, 9, 10, 12, 13], [2, 5, 8, 11, 14]
    first_batches = report_batches(old, 256, 4)
    saved = ReportBatches.from_json(first_batches.to_json())
    grown_batches = report_batches(sorted(old + added), 256, 4, saved)
    first, refresh = ReadingNothing(), ReadingNothing()

    for batches, model in ((first_batches, first), (grown_batches, refresh)):
        extract_with_llm([[texts[s] for s in batch] for batch in batches.batches], model,
                         ontology, MODEL)

    # The earlier prompts again, word for word (the response cache answers them), then the
    # added reports only.
    assert len(first.asked) == 3
    assert refresh.asked[:3] == first.asked
    assert refresh.asked[3:] == [extraction_messages([texts[s] for s in batch], ontology)
                                 for batch in ([2, 5, 8, 11], [14])]

"""Factual and counterfactual reasoning trajectories per study, from an LLM or the offline expert.

For each study: one factual trajectory (its findings and positive diagnoses) and up to `k`
counterfactuals. Toward a target disease of the concept graph, a counterfactual replaces one
source disease — the study's positive disease most strongly related to the target in the graph
(none for a normal study, or when every positive is implied by the target, as Lung Opacity is by
Atelectasis) — following the graph's perturbation plan, or adds the target beside the study's
diseases (an insertion); a study with a disease may also get a deletion of one of them (target
"No Finding"). How many of each a study gets depends on its number of diseases, so that as many
pairs go from n to n + 1 diseases as come back (`edit_balance`). Every candidate goes through
the verifier; an LLM candidate that fails is asked for again, with the reason, up to
`max_candidates` times, then recorded as rejected. Transport failures (after the client's own
retries) are recorded as dead letters. One bad study never fails the batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import networkx as nx
import pandas as pd

from cpo_pipeline import schemas
from cpo_pipeline.concepts.mentions import ConceptExtractor
from cpo_pipeline.concepts.ontology import SAME_LESION, SAME_SIDE
from cpo_pipeline.concepts.queries import (
    PerturbationPlan,
    ancestors,
    choose_counterfactual_targets,
    choose_deleted,
    deletion_plan,
    perturbation_plan,
    scoped_exclusion,
    strongest_edge,
)
from cpo_pipeline.counterfactuals import offline_expert
from cpo_pipeline.counterfactuals.prompts import PROMPT_HASH, counterfactual_messages
from cpo_pipeline.counterfactuals.verifier import (
    Verdict,
    VerifierConfig,
    expected_diagnoses,
    verify_counterfactual,
)
from cpo_pipeline.llm.client import (
    ChatRequest,
    ChatResult,
    EndpointConfig,
    RequestCounters,
    complete_many,
)
from cpo_pipeline.llm.response_cache import ResponseCache
from cpo_pipeline.radiology.answer_format import (
    TrajectoryFormatError,
    format_trajectory,
    parse_trajectory,
    positive_diseases,
)
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS, NO_FINDING
from cpo_pipeline.storage import content_hash

FACTUAL = "factual"
COUNTERFACTUAL = "counterfactual"
REPORT_BACKEND = "report"
LLM_BACKEND = "openai-compatible"
ACCEPTED, REJECTED, DEAD_LETTER = "accepted", "rejected", "dead_letter"

# The table's columns but the two the trajectories asset stamps when it writes the rows.
TRAJECTORY_COLUMNS = tuple(name for name in schemas.COUNTERFACTUAL_TRAJECTORIES.names
                           if name not in ("input_key", "created_at"))


@dataclass(frozen=True)
class StudyInput:
    subject_id: int
    study_id: int
    split: str
    findings: str
    labels: dict[str, float | None]

    @property
    def diagnoses(self) -> tuple[str, ...]:
        return positive_diseases(self.labels)


@dataclass(frozen=True)
class CounterfactualTask:
    study: StudyInput
    source: str | None
    target: str
    plan: PerturbationPlan
    # The study's diagnoses the graph says the target excludes: the verifier lets them go.
    excluded: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.study.study_id}/{self.target}"

    @property
    def replaced(self) -> str | None:
        """The diagnosis the counterfactual gives up: the source, "No Finding" for a normal
        study, None when the target is added beside diagnoses it implies (they stay)."""
        if self.source is not None:
            return self.source
        return NO_FINDING if self.study.diagnoses == (NO_FINDING,) else None

    @property
    def answer(self) -> tuple[str, ...]:
        """The counterfactual's answer line: the factual's less the replaced, plus the target."""
        return expected_diagnoses(self.study.diagnoses, self.replaced, self.target)


@dataclass(frozen=True)
class GenerationOptions:
    k: int = field(default=2, metadata={
        "help": "Counterfactual trajectories per study (the paper's default is 2)."})
    max_candidates: int = field(default=3, metadata={
        "help": "LLM candidates per counterfactual before it is recorded as rejected."})
    verifier: VerifierConfig = field(default_factory=VerifierConfig)


def labelled(studies: pd.DataFrame) -> pd.Series:
    """Which `cxr_studies` rows have a labeller row: only those get a factual answer, since
    missing labels read as "No Finding" would put a diagnosis in the model's mouth."""
    return studies["label_source"].notna()


def study_inputs(studies: pd.DataFrame) -> list[StudyInput]:
    """`cxr_studies` rows as expert inputs (labels: NaN → None)."""
    labels = studies[list(CHEXPERT_LABELS)].astype(object)
    labels = labels.where(labels.notna(), None)
    return [
        StudyInput(int(s), int(t), str(p), str(f), dict(zip(CHEXPERT_LABELS, row, strict=True)))
        for s, t, p, f, row in zip(
            studies["subject_id"], studies["study_id"], studies["split"],
            studies["findings_text"], labels.itertuples(index=False, name=None), strict=True)
    ]


def choose_source(graph: nx.MultiDiGraph, diagnoses: Sequence[str], target: str) -> str | None:
    """The diagnosis a counterfactual toward `target` replaces: the one most strongly related to
    the target (association or exclusion), ties in CheXpert order; None if there is none to
    replace (No Finding, or only diseases the target implies)."""
    implied = ancestors(graph, target)
    candidates = [d for d in diagnoses if d != NO_FINDING and d not in implied]
    if not candidates:
        return None

    def strength(disease: str) -> float:
        edges = [strongest_edge(graph, disease, target, r) for r in ("association", "exclusion")]
        return max((edge.weight for edge in edges if edge is not None), default=0.0)

    return max(candidates, key=lambda d: (strength(d), -candidates.index(d)))


@dataclass(frozen=True)
class EditBalance:
    """How many counterfactuals of each direction a study gets, by its number of diseases n.

    An insertion takes a study from n to n + 1 diseases, a deletion from n + 1 to n, a
    replacement keeps n. Balanced level by level (as many pairs go up from n as come down to
    it), every added finding has its mirror, a removed finding in a report like it: pairs that
    mostly add a finding to normal reports teach a model that the rejected text is the more
    abnormal one, and a bag-of-words reads the direction off what the normal reports say
    ("The lungs are clear."). A study with n diseases gets an insertion with probability
    `insertions[n]` (a normal study: that many, the whole part plus one more with the
    fractional part's probability) and, with n >= 1, a deletion with probability
    `deletions[n]`; the rest of its `k` slots are replacements. Levels beyond the tuples get
    none of either."""

    insertions: tuple[float, ...]
    deletions: tuple[float, ...]

    def insertion_rate(self, diseases: int) -> float:
        return self.insertions[diseases] if diseases < len(self.insertions) else 0.0

    def deletion_rate(self, diseases: int) -> float:
        return self.deletions[diseases] if diseases < len(self.deletions) else 0.0


def level_balance(studies_by_diseases: Sequence[int], k: int) -> EditBalance:
    """The balance for a dataset with `studies_by_diseases[n]` studies of n diseases: across
    each step n -> n + 1 as many insertions as deletions, as many as the two levels allow (a
    normal study has `k` slots for insertions; a study with a disease one deletion and, with
    `k` >= 2, one insertion, its other slots being replacements)."""
    counts = [float(c) for c in studies_by_diseases]
    levels = len(counts)
    insertions, deletions = [0.0] * levels, [0.0] * levels
    for n in range(levels - 1):
        room_up = counts[n] * (k if n == 0 else 1 if k >= 2 else 0)
        flow = min(room_up, counts[n + 1] * (1 if k >= 1 else 0))
        if flow > 0:
            insertions[n] = flow / counts[n]
            deletions[n + 1] = flow / counts[n + 1]
    return EditBalance(tuple(insertions), tuple(deletions))


def edit_balance(graph: nx.MultiDiGraph, k: int) -> EditBalance:
    """`level_balance` for the studies the graph was built from (`studies_by_diseases`, how
    many studies assert 0, 1, 2 ... of the 12 diseases); a graph that records only its
    `normal_studies` of `studies` is read as normal and one-disease studies, and one that
    records neither as a third normal."""
    levels = graph.graph.get("studies_by_diseases")
    if levels and sum(levels) > 0:
        return level_balance(levels, k)
    studies = graph.graph.get("studies") or 0
    normal = graph.graph.get("normal_studies") or 0
    if not (studies and 0 < normal < studies):
        studies, normal = 3, 1
    return level_balance([normal, studies - normal], k)


def _chance(study_key: object, what: str) -> float:
    """A per-study number in [0, 1): a study's choices depend on nothing but its own inputs."""
    return int(content_hash([str(study_key), what])[:12], 16) / 16 ** 12


def plan_counterfactuals(
    study: StudyInput, graph: nx.MultiDiGraph, extractor: ConceptExtractor, k: int,
    balance: EditBalance | None = None,
) -> list[CounterfactualTask]:
    """A study's counterfactual tasks, as many of each direction as `balance` (default:
    `edit_balance(graph, k)`) says for its number of diseases: insertions toward targets drawn
    among every disease (`choose_counterfactual_targets`, balancing slots), replacements toward
    the most related ones, and a deletion of one of its diseases (target "No Finding":
    `choose_deleted`)."""
    balance = balance or edit_balance(graph, k)
    attributes = extractor.present(study.findings)
    diseases = [d for d in study.diagnoses if d != NO_FINDING]
    level = len(diseases)
    delete = (k > 0 and level > 0
              and _chance(study.study_id, "delete") < balance.deletion_rate(level))
    rate = balance.insertion_rate(level)
    inserts = int(rate) + (_chance(study.study_id, "insert") < rate - int(rate))
    inserts = min(inserts, k - delete)
    replacements = k - delete - inserts if level > 0 else 0
    tasks = []
    # Replacements first (the related slots), then insertions (drawn among every disease):
    # one call, so that no disease is the target twice.
    for index, target in enumerate(choose_counterfactual_targets(
            graph, study.labels, attributes, replacements + inserts, study_key=study.study_id,
            balancing=inserts)):
        inserted = index >= replacements or level == 0
        source = None if inserted else choose_source(graph, study.diagnoses, target.disease)
        plan = perturbation_plan(graph, source or NO_FINDING, target.disease, attributes)
        excluded = tuple(d for d in diseases
                         if strongest_edge(graph, d, target.disease, "exclusion") is not None)
        tasks.append(CounterfactualTask(study, source, target.disease, plan, excluded))
    if delete:
        deleted = choose_deleted(graph, study.diagnoses, study.study_id,
                                 avoid=tasks[0].source if tasks else None)
        kept = [d for d in study.diagnoses if d != deleted]
        tasks.append(CounterfactualTask(study, deleted, NO_FINDING,
                                        deletion_plan(graph, deleted, kept, attributes)))
    return tasks


def plan_studies(
    studies: Sequence[StudyInput], graph: nx.MultiDiGraph, extractor: ConceptExtractor, k: int
) -> dict[int, list[CounterfactualTask]]:
    """Every study's counterfactual tasks (`plan_counterfactuals`), by study id, under one
    `edit_balance` of the graph."""
    balance = edit_balance(graph, k)
    return {study.study_id: plan_counterfactuals(study, graph, extractor, k, balance)
            for study in studies}


def _plan_json(plan: PerturbationPlan) -> str:
    return json.dumps(
        {part: [{"concept": step.concept, "edges": [asdict(edge) for edge in step.edges]}
                for step in getattr(plan, part)]
         for part in ("add", "remove", "negate", "keep_locations")},
        sort_keys=True,
    )


def _edits_json(verdict: Verdict) -> str:
    return json.dumps([asdict(edit) for edit in verdict.edits])


def factual_row(study: StudyInput) -> dict[str, object]:
    return {
        "study_id": study.study_id, "subject_id": study.subject_id, "split": study.split,
        "kind": FACTUAL, "source_diagnosis": " and ".join(study.diagnoses), "target_disease": None,
        "text": format_trajectory(study.findings, study.diagnoses),
        "findings": " ".join(study.findings.split()), "edits": "[]", "edit_tokens": 0,
        "plan": None, "expert_backend": REPORT_BACKEND, "expert_model": None,
        "prompt_hash": None, "verdict": FACTUAL, "verdict_reason": "the study's own report",
        "attempts": 0, "prompt_tokens": 0, "completion_tokens": 0, "latency_s": 0.0,
    }


def _counterfactual_row(
    task: CounterfactualTask, verdict: Verdict, candidate: str | None, *, status: str,
    backend: str, model: str | None, prompt_hash: str | None, attempts: int,
    result: ChatResult | None = None,
) -> dict[str, object]:
    findings = None
    if candidate is not None:
        try:
            findings = parse_trajectory(candidate).findings
        except TrajectoryFormatError:
            findings = None
    return {
        "study_id": task.study.study_id, "subject_id": task.study.subject_id,
        "split": task.study.split, "kind": COUNTERFACTUAL,
        "source_diagnosis": task.replaced, "target_disease": task.target,
        "text": candidate, "findings": findings, "edits": _edits_json(verdict),
        "edit_tokens": verdict.edit_tokens, "plan": _plan_json(task.plan),
        "expert_backend": backend, "expert_model": model, "prompt_hash": prompt_hash,
        "verdict": status, "verdict_reason": verdict.reason, "attempts": attempts,
        "prompt_tokens": result.prompt_tokens if result else 0,
        "completion_tokens": result.completion_tokens if result else 0,
        "latency_s": result.latency_s if result else 0.0,
    }


def _verify(task: CounterfactualTask, candidate: str, options: GenerationOptions) -> Verdict:
    return verify_counterfactual(
        task.study.findings, candidate, task.source or NO_FINDING, task.target, options.verifier,
        factual_diagnoses=task.study.diagnoses, replaced=task.replaced, may_drop=task.excluded)


def offline_rows(
    tasks: Sequence[CounterfactualTask], extractor: ConceptExtractor, options: GenerationOptions
) -> list[dict[str, object]]:
    """Counterfactuals written by the offline concept-graph expert (one deterministic try)."""
    rows = []
    for task in tasks:
        findings = offline_expert.apply_plan(task.study.findings, task.plan, task.source,
                                             extractor, task.study.study_id)
        candidate = format_trajectory(findings, task.answer)
        verdict = _verify(task, candidate, options)
        rows.append(_counterfactual_row(
            task, verdict, candidate, status=ACCEPTED if verdict.accepted else REJECTED,
            backend=offline_expert.BACKEND, model=None, prompt_hash=None, attempts=1))
    return rows


def graph_context(graph: nx.MultiDiGraph, task: CounterfactualTask) -> str:
    """The graph's relations among the source, the target and the plan's concepts, as lines."""
    plan = task.plan
    concepts = {task.target, *(step.concept for part in (plan.add, plan.remove, plan.negate,
                                                         plan.keep_locations) for step in part)}
    if task.source:
        concepts.add(task.source)
    lines = set()
    for first, second, data in graph.edges(data=True):
        if first in concepts and second in concepts and data["relation"] != "located_at":
            scope = f", {data['scope']} only" if data.get("scope") else ""
            lines.add(f"{first} --{data['relation']} ({data['weight']:.2f}{scope})--> {second}")
    return "\n".join(sorted(lines))


_WHERE_SCOPED = {SAME_SIDE: " (only where it is on the target's side)",
                 SAME_LESION: " (only on the lesion the target describes)"}


def plan_context(task: CounterfactualTask) -> str:
    lines = []
    if task.target == NO_FINDING:
        lines.append(f"- delete {task.source}: deny it where it was stated, or leave it out, "
                     "as the report would read had it not been seen")
    elif task.source:
        lines.append(f"- replace {task.source} with {task.target}")
    else:
        lines.append(f"- add findings of {task.target}")
    for verb, steps in (("add", task.plan.add), ("remove", task.plan.remove),
                        ("negate", task.plan.negate), ("keep location", task.plan.keep_locations)):
        lines += [f"- {verb}: {step.concept}"
                  + (_WHERE_SCOPED.get(scoped_exclusion(step), "") if verb == "negate" else "")
                  for step in steps]
    return "\n".join(lines)


def _format_error(text: str) -> str | None:
    try:
        parse_trajectory(text)
    except TrajectoryFormatError as error:
        return str(error)
    return None


def llm_rows(
    tasks: Sequence[CounterfactualTask],
    graph: nx.MultiDiGraph,
    endpoint: EndpointConfig,
    cache: ResponseCache | None,
    options: GenerationOptions,
    counters: RequestCounters,
    on_progress: Callable[[int, int, RequestCounters], None] | None = None,
) -> list[dict[str, object]]:
    """Counterfactuals from the LLM expert, each candidate verified, rejected ones asked again
    with the rejection reason (the conversation, and so its cache key, includes it)."""
    conversations = {
        task.key: counterfactual_messages(task.study.findings, task.source or NO_FINDING,
                                          task.target, graph_context(graph, task),
                                          plan_context(task), task.answer)
        for task in tasks
    }
    rows: dict[str, dict[str, object]] = {}
    pending = list(tasks)
    for attempt in range(1, options.max_candidates + 1):
        if not pending:
            break
        requests = [ChatRequest(f"{task.key}/candidate-{attempt}", conversations[task.key])
                    for task in pending]
        results = complete_many(endpoint, requests, cache=cache, validate=_format_error,
                                on_progress=on_progress, counters=counters)
        still_pending = []
        for task, result in zip(pending, results, strict=True):
            common = {"backend": LLM_BACKEND, "model": result.model, "prompt_hash": PROMPT_HASH,
                      "attempts": attempt, "result": result}
            if not result.ok:
                rows[task.key] = _counterfactual_row(
                    task, Verdict(False, f"dead letter: {result.error}"), None,
                    status=DEAD_LETTER, **common)
                continue
            verdict = _verify(task, result.text, options)
            status = ACCEPTED if verdict.accepted else REJECTED
            rows[task.key] = _counterfactual_row(task, verdict, result.text, status=status,
                                                 **common)
            if not verdict.accepted:
                conversations[task.key] = [
                    *conversations[task.key],
                    {"role": "assistant", "content": result.text},
                    {"role": "user", "content": f"That answer was rejected: {verdict.reason}. "
                                                "Write it again, following every rule."},
                ]
                still_pending.append(task)
        pending = still_pending
    return [rows[task.key] for task in tasks]


def generate_trajectories(
    studies: Sequence[StudyInput],
    graph: nx.MultiDiGraph,
    extractor: ConceptExtractor,
    options: GenerationOptions,
    *,
    endpoint: EndpointConfig | None = None,
    cache: ResponseCache | None = None,
    counters: RequestCounters | None = None,
    on_progress: Callable[[int, int, RequestCounters], None] | None = None,
    planned: Mapping[int, Sequence[CounterfactualTask]] | None = None,
) -> pd.DataFrame:
    """Every study's factual trajectory and its counterfactuals (`TRAJECTORY_COLUMNS`).

    `planned` holds the studies' tasks (`plan_studies`) when the caller has planned them
    already, as the trajectories asset has to key its reuse on them; otherwise they are
    planned here."""
    if planned is None:
        planned = plan_studies(studies, graph, extractor, options.k)
    tasks = [task for study in studies for task in planned[study.study_id]]
    if endpoint is None:
        counterfactual = offline_rows(tasks, extractor, options)
    else:
        counterfactual = llm_rows(tasks, graph, endpoint, cache, options,
                                  counters or RequestCounters(), on_progress)
    rows = [factual_row(study) for study in studies] + counterfactual
    return sort_trajectories(pd.DataFrame(rows, columns=list(TRAJECTORY_COLUMNS)))


def sort_trajectories(frame: pd.DataFrame) -> pd.DataFrame:
    """By study, the factual trajectory first, then counterfactuals by target disease."""
    order = frame["kind"].map({FACTUAL: 0, COUNTERFACTUAL: 1})
    return (frame.assign(_kind=order)
            .sort_values(["study_id", "_kind", "target_disease"], kind="stable",
                         na_position="first")
            .drop(columns="_kind").reset_index(drop=True))


INSERTION, REPLACEMENT, DELETION = "insertion", "replacement", "deletion"


def edit_kinds(trajectories: pd.DataFrame) -> pd.Series:
    """Each counterfactual row's edit: a deletion (target "No Finding"), an insertion (nothing
    replaced: a normal study, or a target joining diseases that imply it) or a replacement."""
    counterfactual = trajectories[trajectories["kind"] == COUNTERFACTUAL]
    source = counterfactual["source_diagnosis"]
    kinds = pd.Series(REPLACEMENT, index=counterfactual.index, dtype=object)
    kinds[source.isna() | (source == NO_FINDING)] = INSERTION
    kinds[counterfactual["target_disease"] == NO_FINDING] = DELETION
    return kinds


def dead_letter_fraction(trajectories: pd.DataFrame) -> float:
    """Share of counterfactual tasks that ended without an accepted counterfactual."""
    counterfactual = trajectories[trajectories["kind"] == COUNTERFACTUAL]
    if counterfactual.empty:
        return 0.0
    return float(counterfactual["verdict"].isin([REJECTED, DEAD_LETTER]).mean())

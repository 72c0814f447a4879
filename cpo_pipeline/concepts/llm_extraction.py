"""Optional: disease-attribute associations an LLM reads in reports, as the paper built its graph.

Reports go to the model in batches with our own prompt (a senior chest radiologist extracts the
abnormal imaging descriptors, normalises them to RadLex / Fleischner-glossary terms, maps them to
the diagnosed diseases, and answers in JSON). Replies are validated; a batch whose reply is not
valid JSON of that shape, or whose completion failed, is skipped and recorded, never fatal.

Which reports share a batch is kept from run to run (`report_batches`, saved as
`REPORT_BATCHES_FILENAME` beside the graph): a batch's prompt is its reports' texts in order, so
the response cache answers it again only if the batch is the same. A first run cuts the first
reports by study id into batches in that order. A later run asks the earlier batches again as
they were (less studies that are gone), so a refresh that adds studies sends nothing for the
earlier reports, and puts only the studies in no earlier batch, by study id, into new batches
(a short last batch stays short: filling it up would change its prompt). A changed batch size
starts afresh, as a first run.

Terms come back as free text and are mapped to ontology concepts through their synonyms; terms no
concept has are counted in `unmapped` (a hint for the next seed edit), not added as nodes.

The model is reached through a `Complete` callable, so this module knows nothing of HTTP: the
asset passes one backed by the project's OpenAI-protocol client, tests pass a fake.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cpo_pipeline.concepts.ontology import (
    ASSOCIATION,
    ATTRIBUTE,
    DISEASE,
    LLM,
    ConceptEdge,
    Ontology,
)
from cpo_pipeline.storage import content_hash

Messages = list[dict[str, str]]
Complete = Callable[[Messages], str]


class CompletionUnavailable(RuntimeError):
    """What a `Complete` callable raises when it got no reply for a batch (the batch is skipped)."""


class ReplyError(ValueError):
    """A reply that is not the JSON the prompt asks for; the message names the place."""


SYSTEM_PROMPT = """\
You are a senior chest radiologist building a knowledge graph of chest radiograph findings.

For each report you are given:
1. Extract the abnormal imaging descriptors it asserts: morphological alterations, density \
anomalies, anatomical deviations and functional or dynamic indicators. Ignore normal findings \
and anything the report negates ("no pneumothorax") or only hedges ("cannot exclude").
2. Normalise every descriptor to its RadLex or Fleischner Society glossary term, so that the \
same feature always gets the same term (e.g. "blunting of the left CP angle" -> "blunted \
costophrenic angle"). Prefer these terms when one fits: {attributes}.
3. List the diseases the report diagnoses, using only these names: {diseases}.
4. Map each feature to the diagnosed disease(s) it supports.

Answer with one JSON object and nothing else:
{{"reports": [{{"diseases": [...], "features": [...]}}, ...],
  "disease_feature_map": {{"<disease>": ["<feature>", ...], ...}}}}
"reports" has exactly one entry per report, in the order given."""

_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(?P<body>.*)\n\s*```\s*$", re.DOTALL)


def prompt_sha256(ontology: Ontology) -> str:
    """A hash of the system prompt as sent (template and vocabulary): part of the code version."""
    return content_hash(_system_prompt(ontology))


def _system_prompt(ontology: Ontology) -> str:
    return SYSTEM_PROMPT.format(attributes="; ".join(ontology.names(ATTRIBUTE)),
                                diseases="; ".join(ontology.names(DISEASE)))


def extraction_messages(reports: Sequence[str], ontology: Ontology) -> Messages:
    """The chat messages asking for one batch of reports."""
    numbered = "\n\n".join(f"Report {n}:\n{text.strip()}" for n, text in enumerate(reports, 1))
    return [
        {"role": "system", "content": _system_prompt(ontology)},
        {"role": "user", "content": f"{len(reports)} reports follow.\n\n{numbered}"},
    ]


@dataclass(frozen=True)
class ReportConcepts:
    """What the model read in one report: diagnosed diseases and abnormal features, as written."""

    diseases: tuple[str, ...]
    features: tuple[str, ...]


@dataclass(frozen=True)
class ExtractionReply:
    """One validated reply: per-report concepts and the disease -> features map."""

    reports: tuple[ReportConcepts, ...]
    disease_feature_map: dict[str, tuple[str, ...]]


def _texts(value: object, place: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ReplyError(f"{place}: expected a list of strings, got {json.dumps(value)[:80]}")
    return tuple(item.strip() for item in value if item.strip())


def parse_reply(text: str, n_reports: int) -> ExtractionReply:
    """Validate a reply against the prompt's JSON shape (a ```json fence around it is allowed)."""
    fenced = _FENCE.match(text)
    body = fenced.group("body") if fenced else text
    try:
        document = json.loads(body)
    except json.JSONDecodeError as error:
        raise ReplyError(f"not valid JSON at line {error.lineno} column {error.colno}: "
                         f"{error.msg}") from error
    if not isinstance(document, dict):
        raise ReplyError(f"expected a JSON object, got {type(document).__name__}")
    for key in ("reports", "disease_feature_map"):
        if key not in document:
            raise ReplyError(f"missing key {key!r}")
    reports = document["reports"]
    if not isinstance(reports, list) or len(reports) != n_reports:
        found = len(reports) if isinstance(reports, list) else type(reports).__name__
        raise ReplyError(f"reports: expected a list of {n_reports} entries, got {found}")
    parsed = []
    for index, entry in enumerate(reports):
        if not isinstance(entry, dict):
            raise ReplyError(f"reports[{index}]: expected an object")
        parsed.append(ReportConcepts(_texts(entry.get("diseases"), f"reports[{index}].diseases"),
                                     _texts(entry.get("features"), f"reports[{index}].features")))
    mapping = document["disease_feature_map"]
    if not isinstance(mapping, dict):
        raise ReplyError("disease_feature_map: expected an object")
    return ExtractionReply(
        tuple(parsed),
        {disease: _texts(features, f"disease_feature_map[{disease!r}]")
         for disease, features in mapping.items()},
    )


REPORT_BATCHES_FILENAME = "llm_report_batches.json"


@dataclass(frozen=True)
class ReportBatches:
    """Which studies' reports were asked together, batch by batch, at what batch size."""

    batch_size: int
    batches: tuple[tuple[int, ...], ...]

    def to_json(self) -> str:
        return json.dumps({"batch_size": self.batch_size,
                           "batches": [list(batch) for batch in self.batches]})

    @classmethod
    def from_json(cls, text: str) -> ReportBatches:
        document = json.loads(text)
        return cls(int(document["batch_size"]),
                   tuple(tuple(int(study) for study in batch) for batch in document["batches"]))


def report_batches(study_ids: Sequence[int], limit: int, batch_size: int,
                   earlier: ReportBatches | None = None) -> ReportBatches:
    """At most `limit` of `study_ids` in batches of at most `batch_size`: `earlier`'s batches
    first, as they were but for studies not in `study_ids` (ignored when made at another batch
    size), then the other studies in the order given, in new batches."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    present, used, batches = set(study_ids), set(), []
    if earlier is not None and earlier.batch_size == batch_size:
        for batch in earlier.batches:
            kept = tuple(study for study in batch if study in present and study not in used)
            kept = kept[:max(limit - len(used), 0)]
            if kept:
                batches.append(kept)
                used.update(kept)
    fresh = [study for study in study_ids if study not in used][:max(limit - len(used), 0)]
    batches += [tuple(fresh[start:start + batch_size])
                for start in range(0, len(fresh), batch_size)]
    return ReportBatches(batch_size, tuple(batches))


@dataclass(frozen=True)
class SkippedBatch:
    """A batch whose reply could not be used: its position, first report index and why."""

    batch: int
    first_report: int
    reports: int
    reason: str


@dataclass
class LlmExtraction:
    """The result of `extract_with_llm`: edges to merge and what could not be used."""

    model: str
    edges: list[ConceptEdge]
    batches: int
    skipped: list[SkippedBatch] = field(default_factory=list)
    unmapped: Counter[str] = field(default_factory=Counter)


def extract_with_llm(
    batches: Sequence[Sequence[str]],
    complete: Complete,
    ontology: Ontology,
    model: str,
    min_reports: int = 2,
) -> LlmExtraction:
    """Ask the model about each batch of reports and turn its mappings into association edges.

    A disease-feature pair counts once per report that names the disease, lists the feature and
    whose batch maps the feature to the disease. It becomes an edge (provenance `llm`, the
    model's name) when at least `min_reports` reports count it; weight = the share of reports
    naming the disease that count it, support = that count.
    """
    linked: Counter[tuple[str, str]] = Counter()
    naming: Counter[str] = Counter()
    result = LlmExtraction(model, [], batches=0)
    end = 0  # of the reports so far, for the skipped batches' first report
    for batch, texts in enumerate(batches):
        start, end = end, end + len(texts)
        result.batches += 1
        try:
            reply = parse_reply(complete(extraction_messages(texts, ontology)), len(texts))
        except (CompletionUnavailable, ReplyError) as error:
            result.skipped.append(SkippedBatch(batch, start, len(texts), str(error)))
            continue
        # Unknown terms are counted once, where the reports list them, not again in the map.
        mapping = {
            ontology.preferred_term(disease): {ontology.preferred_term(f) for f in features}
            for disease, features in reply.disease_feature_map.items()
        }
        for report in reply.reports:
            diseases = {_concept(ontology, d, DISEASE, result.unmapped) for d in report.diseases}
            features = {_concept(ontology, f, ATTRIBUTE, result.unmapped) for f in report.features}
            diseases.discard(None)
            features.discard(None)
            naming.update(diseases)
            linked.update((disease, feature) for disease in diseases for feature in features
                          if feature in mapping.get(disease, ()))
    for (disease, feature), count in sorted(linked.items()):
        if count >= min_reports:
            result.edges.append(ConceptEdge(
                *ontology.orient(disease, feature), ASSOCIATION, LLM,
                round(count / naming[disease], 6), count,
                f"{model} mapped {feature} to {disease} in {count} of {naming[disease]} reports "
                f"naming {disease}",
                model=model,
            ))
    return result


def _concept(ontology: Ontology, term: str, kind: str, unmapped: Counter[str]) -> str | None:
    name = ontology.preferred_term(term)
    if name is None or ontology.by_name[name].kind != kind:
        unmapped[f"{kind}: {term.strip().lower()}"] += 1
        return None
    return name

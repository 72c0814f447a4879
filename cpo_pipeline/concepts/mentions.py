"""Radiographic attributes and anatomical locations named in findings text, with their status.

Phrases are the ontology's preferred terms and synonyms; whether a mention is asserted, negated or
hedged comes from the labeller's CheXpert rules, so "no Kerley B lines" reads the way "no edema"
does. A concept is present in a text when at least one of its mentions is positive: hedged
mentions ("possible air bronchogram") are not evidence either way.
"""

from __future__ import annotations

import multiprocessing
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from cpo_pipeline.concepts.ontology import ATTRIBUTE, LOCATION, Ontology
from cpo_pipeline.radiology.chexpert import LABEL_POSITIVE
from cpo_pipeline.radiology.labeller import (
    Mention,
    ObservationPhrases,
    classify_mentions,
    compile_phrases,
)

_WORD_SEPARATOR = re.compile(r"[-\s]+")
# Texts per task handed to a worker process: large enough that pickling does not dominate.
_CHUNK = 2_000


def phrase_pattern(term: str) -> str:
    """A term as a labeller phrase: words escaped, and a hyphen or space between two words
    matching either ("ground-glass" also finds "ground glass")."""
    return r"[-\s]+".join(re.escape(word) for word in _WORD_SEPARATOR.split(term.strip().lower()))


class ConceptExtractor:
    """Finds an ontology's attributes and locations in text; build once, use for many texts."""

    def __init__(self, ontology: Ontology) -> None:
        concepts = [c for c in ontology.concepts if c.kind in (ATTRIBUTE, LOCATION)]
        self.names: tuple[str, ...] = tuple(concept.name for concept in concepts)
        self._column = {name: index for index, name in enumerate(self.names)}
        self._table = compile_phrases({
            concept.name: ObservationPhrases(
                findings=tuple(phrase_pattern(term) for term in (concept.name, *concept.synonyms))
            )
            for concept in concepts
        })

    def mentions(self, text: str) -> list[Mention]:
        """Every attribute or location mention in `text`, labelled by its preferred term."""
        return classify_mentions(text, self._table)

    def present(self, text: str) -> list[str]:
        """The concepts `text` asserts (a positive mention), in ontology order."""
        asserted = {m.label for m in self.mentions(text) if m.status == LABEL_POSITIVE}
        return [name for name in self.names if name in asserted]

    def presence_row(self, text: str) -> np.ndarray:
        row = np.zeros(len(self.names), dtype=bool)
        for mention in self.mentions(text):
            if mention.status == LABEL_POSITIVE:
                row[self._column[mention.label]] = True
        return row


_worker_extractor: ConceptExtractor | None = None


def _start_worker(ontology: Ontology) -> None:
    global _worker_extractor
    _worker_extractor = ConceptExtractor(ontology)


def _presence_chunk(texts: Sequence[str]) -> np.ndarray:
    assert _worker_extractor is not None, "worker started without _start_worker"
    return _presence_rows(_worker_extractor, texts)


def _presence_rows(extractor: ConceptExtractor, texts: Sequence[str]) -> np.ndarray:
    rows = np.zeros((len(texts), len(extractor.names)), dtype=bool)
    for index, text in enumerate(texts):
        rows[index] = extractor.presence_row(text)
    return rows


def concept_presence(texts: Sequence[str], ontology: Ontology, workers: int = 1) -> pd.DataFrame:
    """One row per text, one boolean column per attribute and location: asserted in the text.

    With `workers` > 1 the texts are split into chunks read by that many processes (spawned,
    not forked, so a threaded caller such as a Dagster run stays safe); rows keep text order.
    """
    extractor = ConceptExtractor(ontology)
    if workers <= 1 or len(texts) <= _CHUNK:
        rows = _presence_rows(extractor, texts)
    else:
        chunks = [texts[start:start + _CHUNK] for start in range(0, len(texts), _CHUNK)]
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers, initializer=_start_worker, initargs=(ontology,)) as pool:
            rows = np.concatenate(pool.map(_presence_chunk, chunks))
    return pd.DataFrame(rows, columns=list(extractor.names))

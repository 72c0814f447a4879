"""Natural-language metrics of generated findings against the reference findings: BLEU-1..4,
ROUGE-L, METEOR and CIDEr with the COCO caption evaluation package (`pycocoevalcap`), the
scorers report-generation papers use, the paper's included.

Texts go through the package's PTB tokenizer (a Java program, as METEOR is). Where `java` is
not on the PATH, the tokenizer falls back to lower-casing and splitting off punctuation, and
METEOR is skipped with the reason in `NlgScores.notes`, never faked. CIDEr weighs n-grams by
their document frequency over the evaluated set, so it is only comparable between runs over the
same set (the whole test split), not per study. An answer that did not parse scores as an
empty text.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field

METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "METEOR", "CIDEr")
# An empty candidate still needs a token for the scorers (they divide by lengths).
_EMPTY = "<empty>"


@dataclass(frozen=True)
class NlgScores:
    """Corpus-level scores by metric name (`METRICS`; a skipped metric is absent) and why any
    was skipped."""

    scores: dict[str, float]
    notes: tuple[str, ...] = field(default=())


def _simple_tokens(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+(?:[-'][a-z0-9]+)*", text.lower()))


def _tokenized(texts: Sequence[str], java: bool) -> dict[int, list[str]]:
    if not java:
        return {i: [_simple_tokens(t) or _EMPTY] for i, t in enumerate(texts)}
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    with contextlib.redirect_stdout(io.StringIO()):  # it prints its speed
        tokens = PTBTokenizer().tokenize({i: [{"caption": t}] for i, t in enumerate(texts)})
    return {i: [words or _EMPTY] for i, [words] in tokens.items()}


def nlg_scores(generated: Sequence[str | None], reference: Sequence[str], *,
               meteor: bool = True) -> NlgScores:
    """Corpus BLEU-1..4, ROUGE-L, CIDEr and (with Java, unless `meteor` is False) METEOR of
    `generated` against `reference`, one reference per text."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if len(generated) != len(reference):
        raise ValueError(f"{len(generated)} generated and {len(reference)} reference texts")
    if not reference:
        return NlgScores({}, ("no texts to score",))
    java = shutil.which("java") is not None
    notes = [] if java else ["java not found: simple tokenization instead of the PTB tokenizer"]
    candidates = _tokenized([text or "" for text in generated], java)
    references = _tokenized(list(reference), java)
    scores: dict[str, float] = {}
    with contextlib.redirect_stdout(io.StringIO()):
        bleu, _ = Bleu(4).compute_score(references, candidates, verbose=0)
    scores.update({f"BLEU-{n}": float(value) for n, value in enumerate(bleu, start=1)})
    scores["ROUGE-L"] = float(Rouge().compute_score(references, candidates)[0])
    if meteor and java:
        from pycocoevalcap.meteor.meteor import Meteor

        scorer = Meteor()
        try:
            scores["METEOR"] = float(scorer.compute_score(references, candidates)[0])
        finally:
            with contextlib.suppress(Exception):
                scorer.close()
    elif meteor:
        notes.append("METEOR skipped: it runs a Java program and java is not on the PATH")
    scores["CIDEr"] = float(Cider().compute_score(references, candidates)[0])
    return NlgScores({name: scores[name] for name in METRICS if name in scores}, tuple(notes))

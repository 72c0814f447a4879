"""Statements of normality a report makes without naming a finding ("The lungs are clear."),
and the diseases whose assertion beside one is a contradiction.

The rule-based labeller reads these as no mention at all, so both the offline expert (which
drops them when its target contradicts them) and the quality figures (which count the ones
left) need them spelled out; this is their one home.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

# Lower-casing ASCII only keeps every offset where it was in the original text.
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

_PARENCHYMA = ("Atelectasis", "Consolidation", "Edema", "Lung Lesion", "Lung Opacity", "Pneumonia")
_ACUTE = ("Consolidation", "Edema", "Pleural Effusion", "Pneumonia", "Pneumothorax")


@dataclass(frozen=True)
class NormalStatement:
    """A statement of normality the labeller reads as no mention at all, and the diseases whose
    assertion beside it is a contradiction."""

    phrase: str
    pattern: re.Pattern[str]
    contradicts: tuple[str, ...]


NORMAL_STATEMENTS: tuple[NormalStatement, ...] = (
    # "The lungs are otherwise clear" beside a lung finding is consistent, so it does not match.
    NormalStatement("the lungs are clear", re.compile(
        r"\blungs? (?:are|is|remains?|appear) (?:now )?clear\b(?! of)|\bclear lungs\b"),
        _PARENCHYMA),
    # Well expanded lungs have lost no volume: collapse beside it is a contradiction.
    NormalStatement("the lungs are well expanded", re.compile(
        r"\blungs? (?:are|is|remains?|appear) (?:now )?well[- ]expanded\b"), ("Atelectasis",)),
    NormalStatement("no acute cardiopulmonary process", re.compile(
        r"\bno acute (?:cardiopulmonary|intrathoracic) (?:process|abnormality|disease)"), _ACUTE),
    NormalStatement("no acute osseous abnormality", re.compile(
        r"\bno acute (?:osseous|bony) (?:abnormality|abnormalities|injury)"), ("Fracture",)),
)


def lowered(text: str) -> str:
    """`text` with ASCII letters lower-cased, every character at its offset (what the patterns
    are matched against)."""
    return text.translate(_ASCII_LOWER)


def contradicted_by(text: str, disease: str) -> list[int]:
    """Start offsets in `text` of each normal statement that asserting `disease` contradicts."""
    searched = lowered(text)
    return [match.start() for statement in NORMAL_STATEMENTS if disease in statement.contradicts
            for match in statement.pattern.finditer(searched)]

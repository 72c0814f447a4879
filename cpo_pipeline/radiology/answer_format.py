"""The reasoning-trajectory answer format: `<think> findings </think> The disease of this patient is X.`

X names the positive CheXpert findings (1.0), in CheXpert column order, joined as English
("A", "A and B", "A, B and C"). Uncertain (-1.0) findings are not named: the answer commits only
to what the text asserts. Support Devices is not a disease and is never named. With no positive
finding X is "No Finding". Lung Opacity is named beside its children when both are positive,
exactly as the labels say (the answer does not collapse the CheXpert hierarchy).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cpo_pipeline.radiology.chexpert import DISEASES, LABEL_POSITIVE, NO_FINDING

# A whole trajectory: what `parse_trajectory` reads and the training-set export matches.
ANSWER_PATTERN = re.compile(
    r"^\s*<think>\s*(?P<findings>.*?)\s*</think>\s*"
    r"The disease of this patient is (?P<diagnosis>[^.]+)\.\s*$",
    re.DOTALL,
)
# The answer line alone: the "CPO without CoT" ablation's format (`diagnosis_only_pairs`).
ANSWER_ONLY_PATTERN = re.compile(r"^\s*The disease of this patient is (?P<diagnosis>[^.]+)\.\s*$")


@dataclass(frozen=True)
class Trajectory:
    findings: str
    diagnoses: tuple[str, ...]

    @property
    def text(self) -> str:
        return format_trajectory(self.findings, self.diagnoses)


def positive_diseases(labels: Mapping[str, float | None]) -> tuple[str, ...]:
    """The diseases a label set asserts, in CheXpert order; `("No Finding",)` when none."""
    named = tuple(d for d in DISEASES if labels.get(d) == LABEL_POSITIVE)
    return named or (NO_FINDING,)


def join_diagnoses(diagnoses: Sequence[str]) -> str:
    if len(diagnoses) == 1:
        return diagnoses[0]
    return ", ".join(diagnoses[:-1]) + " and " + diagnoses[-1]


def format_trajectory(findings: str, diagnoses: Sequence[str]) -> str:
    if not diagnoses:
        raise ValueError("a trajectory names at least one diagnosis (or No Finding)")
    findings = " ".join(findings.split())
    return f"<think> {findings} </think> The disease of this patient is {join_diagnoses(diagnoses)}."


class TrajectoryFormatError(ValueError):
    pass


def parse_trajectory(text: str) -> Trajectory:
    """Split an answer into findings and named diagnoses; raise naming what is wrong."""
    match = ANSWER_PATTERN.match(text)
    if match is None:
        raise TrajectoryFormatError(
            "expected '<think> findings </think> The disease of this patient is X.', got "
            f"{text[:120]!r}"
        )
    findings = match.group("findings").strip()
    if not findings:
        raise TrajectoryFormatError("the <think> block is empty")
    return Trajectory(findings, _diagnoses(match.group("diagnosis")))


def parse_answer(text: str) -> Trajectory:
    """What a model answered: a whole trajectory, or the answer line alone (the no-CoT
    format), whose findings are then empty. Raises naming what is wrong."""
    match = ANSWER_ONLY_PATTERN.match(text)
    if match is None:
        return parse_trajectory(text)
    return Trajectory("", _diagnoses(match.group("diagnosis")))


def own_thinking(text: str) -> str:
    """The thinking a generated text holds, however broken its answer: the inside of its
    `<think>` block (to the end when it never closes), else whatever precedes an answer line
    ("" for an answer line alone)."""
    opened = text.find("<think>")
    if opened >= 0:
        body = text[opened + len("<think>"):]
        closed = body.find("</think>")
        return " ".join((body if closed < 0 else body[:closed]).split())
    cut = text.find("The disease of this patient is")
    return " ".join((text if cut < 0 else text[:cut]).split())


def _diagnoses(line: str) -> tuple[str, ...]:
    names = re.split(r",\s*|\s+and\s+", line.strip())
    known = {name.lower(): name for name in (*DISEASES, NO_FINDING)}
    unknown = [name for name in names if name.lower() not in known]
    if unknown:
        raise TrajectoryFormatError(f"unknown diagnosis name(s) {unknown} in the answer line")
    return tuple(known[name.lower()] for name in names)

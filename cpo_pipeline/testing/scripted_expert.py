"""A scripted counterfactual expert to put behind the local OpenAI-compatible server.

It answers the project's counterfactual prompt the way a careful radiologist would: keeps the
findings, drops the sentences asserting the current diagnosis or contradicting the target
("No pleural effusion." for an effusion, "The lungs are clear." for a lung finding), and states
the target. For the
tests, the benchmark and smoke tests of the LLM path without a model:

    with OpenAICompatibleServer(responder=answer_counterfactual_prompt) as server: ...
"""

from __future__ import annotations

import re

from cpo_pipeline.counterfactuals import offline_expert
from cpo_pipeline.counterfactuals.verifier import diagnosis_of
from cpo_pipeline.radiology.answer_format import format_trajectory
from cpo_pipeline.radiology.chexpert import LABEL_POSITIVE
from cpo_pipeline.radiology.labeller import find_mentions

_FINDINGS = re.compile(r"Report findings:\n(.*?)\n\n", re.DOTALL)
_SOURCE = re.compile(r"Current diagnosis: (.*)")
_TARGET = re.compile(r"Target diagnosis: (.*)")


def prompt_findings(prompt: str) -> str:
    """The report findings quoted in a counterfactual prompt."""
    return _FINDINGS.search(prompt).group(1)


def answer_counterfactual_prompt(messages: list[dict]) -> str:
    """The answer to the first user turn of a `counterfactual_messages` conversation."""
    prompt = messages[1]["content"]
    source, target = _SOURCE.search(prompt).group(1), _TARGET.search(prompt).group(1)
    kept = [
        sentence for sentence in offline_expert.split_sentences(prompt_findings(prompt))
        if not any(m.label == source and m.status == LABEL_POSITIVE
                   for m in find_mentions(sentence))
        and not offline_expert.target_contradictions(sentence, target)
    ]
    findings = " ".join([*kept, f"There is {offline_expert.TARGET_PHRASES[target]}."])
    return format_trajectory(findings, diagnosis_of(findings))

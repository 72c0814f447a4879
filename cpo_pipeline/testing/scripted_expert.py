"""A scripted counterfactual expert to put behind the local OpenAI-compatible server.

It answers the project's counterfactual prompt the way a careful radiologist would: rewrites
the findings in place (`editing.rewrite`: the clauses stating the current diagnosis, denying
the target or stating a normality it contradicts go, the target is stated where they stood, in
the report's voice; `editing.delete_finding` when the target is "No Finding") and names the
counterfactual diagnoses the prompt gives. Unlike the offline
expert it does not read the perturbation plan. For the tests, the benchmark and smoke tests of
the LLM path without a model:

    with OpenAICompatibleServer(responder=answer_counterfactual_prompt) as server: ...
"""

from __future__ import annotations

import re

import numpy as np

from cpo_pipeline.counterfactuals.editing import delete_finding, rewrite
from cpo_pipeline.radiology.answer_format import format_trajectory
from cpo_pipeline.radiology.chexpert import DISEASES, NO_FINDING
from cpo_pipeline.storage import content_hash

_FINDINGS = re.compile(r"Report findings:\n(.*?)\n\n", re.DOTALL)
_SOURCE = re.compile(r"Current diagnosis: (.*)")
_TARGET = re.compile(r"Target diagnosis: (.*)")
_ANSWER = re.compile(r"Counterfactual diagnoses: (.*)")


def prompt_findings(prompt: str) -> str:
    """The report findings quoted in a counterfactual prompt."""
    return _FINDINGS.search(prompt).group(1)


def answer_counterfactual_prompt(messages: list[dict]) -> str:
    """The answer to the first user turn of a `counterfactual_messages` conversation."""
    prompt = messages[1]["content"]
    source, target = _SOURCE.search(prompt).group(1), _TARGET.search(prompt).group(1)
    answer = _ANSWER.search(prompt).group(1)
    findings = prompt_findings(prompt)
    rng = np.random.default_rng(int(content_hash(["scripted", findings, target])[:16], 16))
    if target == NO_FINDING:
        edited = delete_finding(findings, source, rng)
    else:
        edited = rewrite(findings, None if source == NO_FINDING else source, target, rng)
    return format_trajectory(edited, [d for d in DISEASES if d in answer] or [NO_FINDING])

"""The counterfactual generation expert's prompt, versioned by the hash of its text.

Written for this project from the paper's description of the expert: it receives the report
findings, the concept graph as text (only the neighbourhood of the diseases involved, to keep the
prompt short), the perturbation plan and the target disease, and writes the same findings with
minimal edits so that they support the target, in the trajectory answer format.
"""

from __future__ import annotations

from collections.abc import Sequence

from cpo_pipeline.radiology.answer_format import join_diagnoses
from cpo_pipeline.storage import content_hash

SYSTEM_PROMPT = """\
You are a senior chest radiologist helping to build training data for a radiology AI model.
You rewrite the FINDINGS of a real chest radiograph report into a counterfactual version that
supports a different diagnosis, changing as little as possible.

Rules:
- Keep every sentence that the plan does not touch, word for word.
- Make only the edits in the plan: insert, delete or negate one or two findings.
- Use standard radiology terms (Fleischner Society glossary, RadLex); state the new findings
  plainly and positively, as a radiologist would (e.g. "moderate right pleural effusion").
- The result must be consistent with the concept graph: do not keep findings that the graph says
  exclude the target disease.
- Do not mention that the text was modified. Do not add recommendations or comparisons.
- Keep every other finding the report asserts, unless the graph says the target excludes it.
- Answer with exactly one line in this format and nothing else, naming the counterfactual
  diagnoses given below:
  <think> {counterfactual findings} </think> The disease of this patient is {diagnoses}.
"""

USER_TEMPLATE = """\
Report findings:
{findings}

Current diagnosis: {source}
Target diagnosis: {target}
Counterfactual diagnoses: {answer}

Concept graph (relevant part):
{graph}

Perturbation plan:
{plan}
"""

PROMPT_HASH = content_hash(SYSTEM_PROMPT + "\x00" + USER_TEMPLATE)[:16]


def counterfactual_messages(
    findings: str, source: str, target: str, graph_text: str, plan_text: str,
    answer: Sequence[str],
) -> list[dict[str, str]]:
    """The chat messages asking the expert for one counterfactual whose answer line names
    `answer`."""
    user = USER_TEMPLATE.format(
        findings=" ".join(findings.split()), source=source, target=target,
        answer=join_diagnoses(answer),
        graph=graph_text.strip() or "(no relations recorded)", plan=plan_text.strip(),
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]

"""Generation and teacher-forced likelihoods on the tiny offline model."""

import numpy as np
import pytest
import torch

from cpo_pipeline.evaluation.inference import (
    _image,
    continuation_logprobs,
    generate,
    prompt_text,
)
from cpo_pipeline_tests.evaluation.conftest import example


def test_batched_greedy_answers_equal_one_at_a_time(tiny, tmp_path):
    model, processor = tiny
    examples = [example(tmp_path, seed) for seed in range(3)]

    batched = generate(model, processor, examples, max_new_tokens=12, batch_size=3)
    single = generate(model, processor, examples, max_new_tokens=12, batch_size=1)

    assert len(batched) == 3 and all(isinstance(text, str) for text in batched)
    assert batched == single


def test_continuation_logprobs_are_the_sum_of_the_continuation_token_logprobs(tiny, tmp_path):
    model, processor = tiny
    one = example(tmp_path, 0)
    prefix = "<think> Small left pleural effusion. </think>"
    lines = [" The disease of this patient is Pleural Effusion.",
             " The disease of this patient is No Finding."]

    scores = continuation_logprobs(model, processor, one, prefix, lines)

    # By hand: the full text of the first line alone, no padding, summed over its own tokens.
    head = prompt_text(processor, one) + prefix
    image = _image(one)
    head_length = processor(text=[head], images=[image], return_tensors="pt")["input_ids"].shape[1]
    inputs = processor(text=[head + lines[0]], images=[image], return_tensors="pt")
    with torch.no_grad():
        logprobs = torch.log_softmax(model(**inputs).logits[0, :-1].float(), dim=-1)
    targets = inputs["input_ids"][0, 1:]
    by_hand = float(logprobs[torch.arange(len(targets)), targets][head_length - 1:].sum())

    assert scores[0] == pytest.approx(by_hand, rel=1e-4, abs=1e-3)
    assert all(np.isfinite(scores)) and all(score < 0 for score in scores)
    assert scores[0] != pytest.approx(scores[1])


def test_every_answer_label_gets_a_likelihood_score_after_the_thinking(tiny, tmp_path):
    from cpo_pipeline.evaluation.classification import ANSWER_LABELS
    from cpo_pipeline.evaluation.inference import answer_line_scores

    model, processor = tiny
    scores = answer_line_scores(model, processor, example(tmp_path, 1),
                                "Small left pleural effusion.", ANSWER_LABELS)

    assert list(scores) == list(ANSWER_LABELS)
    assert all(np.isfinite(value) and value < 0 for value in scores.values())
    assert len({round(value, 4) for value in scores.values()}) > 1

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


def _by_hand(model, processor, one: dict, prefix: str, continuation: str) -> float:
    """The full text of one continuation alone, no cache and no padding, summed over the
    tokens it adds to prompt + prefix."""
    head = prompt_text(processor, one) + prefix
    image = _image(one)
    head_length = processor(text=[head], images=[image], return_tensors="pt")["input_ids"].shape[1]
    inputs = processor(text=[head + continuation], images=[image], return_tensors="pt")
    with torch.no_grad():
        logprobs = torch.log_softmax(model(**inputs).logits[0, :-1].float(), dim=-1)
    targets = inputs["input_ids"][0, 1:]
    return float(logprobs[torch.arange(len(targets)), targets][head_length - 1:].sum())


def test_continuation_logprobs_are_the_sum_of_the_continuation_token_logprobs(tiny, tmp_path):
    model, processor = tiny
    one = example(tmp_path, 0)
    prefix = "<think> Small left pleural effusion. </think>"
    # Uneven lengths: the short lines are padded beside the long one on the shared cache.
    lines = [" The disease of this patient is Pleural Effusion.",
             " The disease of this patient is No Finding.",
             " The disease of this patient is Enlarged Cardiomediastinum and Lung Opacity.",
             " No"]

    scores = continuation_logprobs(model, processor, one, prefix, lines)

    by_hand = [_by_hand(model, processor, one, prefix, line) for line in lines]
    assert scores == pytest.approx(by_hand, rel=1e-4, abs=1e-3)
    assert all(np.isfinite(scores)) and all(score < 0 for score in scores)
    assert scores[0] != pytest.approx(scores[1])


def test_whole_answers_after_an_empty_prefix_score_as_their_full_pass(tiny, tmp_path):
    """How preference rewards use it: chosen and rejected answers, straight after the prompt."""
    model, processor = tiny
    one = example(tmp_path, 2)
    chosen = ("<think> Moderate cardiomegaly with interstitial edema. </think> "
              "The disease of this patient is Cardiomegaly and Edema.")
    rejected = "<think> Lungs are clear. </think> The disease of this patient is No Finding."

    scores = continuation_logprobs(model, processor, one, "", [chosen, rejected])

    assert scores == pytest.approx([_by_hand(model, processor, one, "", text)
                                    for text in (chosen, rejected)], rel=1e-4, abs=1e-3)


def test_a_continuation_that_retokenizes_the_prefix_is_refused(tiny, tmp_path):
    model, processor = tiny
    with pytest.raises(ValueError, match="word boundary"):
        continuation_logprobs(model, processor, example(tmp_path, 0), "<think> effus",
                              ["ion. </think>"])


def test_every_answer_label_gets_a_likelihood_score_after_the_thinking(tiny, tmp_path):
    from cpo_pipeline.evaluation.classification import ANSWER_LABELS
    from cpo_pipeline.evaluation.inference import answer_line_scores

    model, processor = tiny
    scores = answer_line_scores(model, processor, example(tmp_path, 1),
                                "Small left pleural effusion.", ANSWER_LABELS)

    assert list(scores) == list(ANSWER_LABELS)
    assert all(np.isfinite(value) and value < 0 for value in scores.values())
    assert len({round(value, 4) for value in scores.values()}) > 1


def test_an_answer_without_thinking_is_scored_right_after_the_prompt(tiny, tmp_path):
    """The no-CoT model's format: its answer lines scored where it writes them, with no
    thinking block in front."""
    from cpo_pipeline.evaluation.inference import answer_line_scores

    model, processor = tiny
    one = example(tmp_path, 3)
    labels = ["Edema", "No Finding"]

    scores = answer_line_scores(model, processor, one, None, labels)
    after_empty_thinking = answer_line_scores(model, processor, one, "", labels)

    assert list(scores.values()) == pytest.approx(
        [_by_hand(model, processor, one, "", f"The disease of this patient is {label}.")
         for label in labels], rel=1e-4, abs=1e-3)
    assert list(scores.values()) != pytest.approx(list(after_empty_thinking.values()))

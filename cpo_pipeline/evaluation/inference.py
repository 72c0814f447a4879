"""What the evaluation asks of a model: greedy answers, and log-likelihoods of given texts.

Imported only by the evaluation process (torch at call time), never by the Dagster code server.
Examples are rows of the exported training sets (`sft_dataset` / `preference_pairs` splits on
disk): a user turn (`messages[0]` or `prompt`) and `images`, laid out the way the training entry
point lays them out (image first, then the request), so a model is asked exactly what it was
trained on.

- `generate`: batched greedy generation (left padding), the answer text after the prompt.
- `continuation_logprobs`: for one example and a shared prefix of the answer (e.g. its
  thinking, "<think> ... </think>"), the summed log-probability of each continuation (e.g. each
  possible answer line), teacher-forced: the likelihood scores behind the per-label AUCs, and
  the sequence log-probabilities behind preference rewards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cpo_pipeline.preference.prompt import multimodal_prompt


def prompt_text(processor: Any, example: dict) -> str:
    """The chat-formatted generation prompt of `example` (image placeholder included)."""
    return processor.apply_chat_template(multimodal_prompt(example), add_generation_prompt=True,
                                         tokenize=False)


def _image(example: dict):
    from PIL import Image

    image = example["images"][0]
    return Image.open(image).convert("RGB") if isinstance(image, str) else image.convert("RGB")


def _encode(processor: Any, texts: list[str], images: list, device) -> dict:
    tokenizer = processor.tokenizer
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        inputs = processor(text=texts, images=images, padding=True, return_tensors="pt")
    finally:
        tokenizer.padding_side = side
    return {key: value.to(device) for key, value in inputs.items()}


def generate(model: Any, processor: Any, examples: Sequence[dict], *, max_new_tokens: int = 128,
             batch_size: int = 8) -> list[str]:
    """Greedy answers, one per example, special tokens removed."""
    import torch

    model.eval()
    answers: list[str] = []
    for start in range(0, len(examples), batch_size):
        batch = examples[start:start + batch_size]
        inputs = _encode(processor, [prompt_text(processor, e) for e in batch],
                         [_image(e) for e in batch], model.device)
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        prompt_length = inputs["input_ids"].shape[1]
        answers += [text.strip() for text in processor.batch_decode(
            output[:, prompt_length:], skip_special_tokens=True)]
    return answers


def continuation_logprobs(model: Any, processor: Any, example: dict, prefix: str,
                          continuations: Sequence[str]) -> list[float]:
    """Sum of log p(token) over each continuation's tokens, given the prompt and `prefix`,
    teacher-forced. The prompt, its image and the prefix go through the model once; the
    continuations then run together on copies of that key-value cache, so the vision tower and
    the shared tokens are not recomputed per continuation (13 answer lines after a long
    thinking cost little more than one). A continuation's tokens are those the full text has
    beyond the tokens of prompt + prefix; raises if tokenization merges the two."""
    import torch

    model.eval()
    tokenizer = processor.tokenizer
    head = prompt_text(processor, example) + prefix
    # Text-only tokenization is enough to cut each continuation off the shared head: the
    # processor's image-token expansion happens inside the head, the same for every text.
    head_text_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
    tails = []
    for continuation in continuations:
        ids = tokenizer(head + continuation, add_special_tokens=False)["input_ids"]
        if ids[:len(head_text_ids)] != head_text_ids:
            raise ValueError("the continuations change how the prefix tokenizes; start each "
                             "continuation at a word boundary (e.g. with a space)")
        tails.append(ids[len(head_text_ids):])
    if not all(tails):
        raise ValueError("an empty continuation has no tokens to score")

    inputs = processor(text=[head], images=[_image(example)], return_tensors="pt")
    inputs = {key: value.to(model.device) for key, value in inputs.items()}
    width = max(len(tail) for tail in tails)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    tail_ids = torch.tensor([tail + [pad] * (width - len(tail)) for tail in tails],
                            device=model.device)
    tail_mask = torch.tensor([[1] * len(tail) + [0] * (width - len(tail)) for tail in tails],
                             device=model.device)
    with torch.no_grad():
        shared = model(**inputs, use_cache=True)
        cache = shared.cache
        cache.batch_repeat_interleave(len(tails))
        head_mask = inputs["attention_mask"].expand(len(tails), -1)
        # Right padding: a continuation's own tokens never attend to the pads after them.
        rest = model(input_ids=tail_ids, attention_mask=torch.cat([head_mask, tail_mask], dim=1),
                     cache=cache, use_cache=True)
    first = torch.log_softmax(shared.logits[0, -1].float(), dim=-1)
    following = torch.log_softmax(rest.logits[:, :-1].float(), dim=-1)
    logprobs = torch.cat([first.expand(len(tails), -1).unsqueeze(1), following], dim=1)
    token_logprobs = logprobs.gather(-1, tail_ids.unsqueeze(-1)).squeeze(-1)
    return [float(value) for value in (token_logprobs * tail_mask).sum(dim=1)]


def answer_line_probe(findings: str | None, labels: Sequence[str]) -> tuple[str, list[str]]:
    """The prefix (`findings` as the thinking; None: no thinking block, the no-CoT format) and,
    per label, the answer line naming it alone that `answer_line_scores` scores after it."""
    if findings is None:
        return "", [f"The disease of this patient is {label}." for label in labels]
    prefix = f"<think> {' '.join(findings.split())} </think>"
    return prefix, [f" The disease of this patient is {label}." for label in labels]


def answer_line_scores(model: Any, processor: Any, example: dict, findings: str | None,
                       labels: Sequence[str]) -> dict[str, float]:
    """Per label, the model's log-likelihood of the answer line naming it alone ("The disease
    of this patient is X."), teacher-forced after `findings` as its thinking (None: right
    after the prompt, as a model answering without thinking does): the score a generative
    model gives each label, behind the per-label ROC AUCs."""
    prefix, lines = answer_line_probe(findings, labels)
    return dict(zip(labels, continuation_logprobs(model, processor, example, prefix, lines),
                    strict=True))

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

from cpo_pipeline.training.train import user_content


def _user_turn(example: dict) -> dict:
    turns = example["prompt"] if "prompt" in example else example["messages"][:-1]
    return {"role": turns[0]["role"], "content": user_content(turns[0])}


def prompt_text(processor: Any, example: dict) -> str:
    """The chat-formatted generation prompt of `example` (image placeholder included)."""
    return processor.apply_chat_template([_user_turn(example)], add_generation_prompt=True,
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
    """Sum of log p(token) over each continuation's tokens, given the prompt and `prefix`
    (teacher-forced, one batched forward pass). The continuation's tokens are those the full
    text has beyond the tokens of prompt + prefix; raises if tokenization merges the two."""
    import torch

    model.eval()
    tokenizer = processor.tokenizer
    head = prompt_text(processor, example) + prefix
    texts = [head + continuation for continuation in continuations]
    image = _image(example)
    head_ids = processor(text=[head], images=[image], return_tensors="pt")["input_ids"][0]
    side, tokenizer.padding_side = tokenizer.padding_side, "right"
    try:
        inputs = processor(text=texts, images=[image] * len(texts), padding=True,
                           return_tensors="pt")
    finally:
        tokenizer.padding_side = side
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    if not (ids[:, :len(head_ids)] == head_ids).all():
        raise ValueError("the continuations change how the prefix tokenizes; start each "
                         "continuation at a word boundary (e.g. with a space)")
    device_inputs = {key: value.to(model.device) for key, value in inputs.items()}
    with torch.no_grad():
        logits = model(**device_inputs).logits.float()
    logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
    targets = ids[:, 1:].to(logprobs.device)
    token_logprobs = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    positions = torch.arange(targets.shape[1], device=logprobs.device)
    scored = (positions >= len(head_ids) - 1) & mask[:, 1:].bool().to(logprobs.device)
    return [float(value) for value in (token_logprobs * scored).sum(dim=1)]


def answer_line_scores(model: Any, processor: Any, example: dict, findings: str,
                       labels: Sequence[str]) -> dict[str, float]:
    """Per label, the model's log-likelihood of the answer line naming it alone ("The disease
    of this patient is X."), teacher-forced after `findings` as its thinking: the score a
    generative model gives each label, behind the per-label ROC AUCs."""
    prefix = f"<think> {' '.join(findings.split())} </think>"
    lines = [f" The disease of this patient is {label}." for label in labels]
    return dict(zip(labels, continuation_logprobs(model, processor, example, prefix, lines),
                    strict=True))

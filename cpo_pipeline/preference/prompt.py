"""The user turn every example starts with: the radiograph and the request.

One home for the turn's wording (`DEFAULT_REQUEST`) and for its multimodal layout, which the
training entry point and the evaluation both ask a model with (`multimodal_prompt`), so a model
is evaluated on exactly the turn it was trained on. The exported sets store the turn as text
(TRL's conversational format, `preference.export`); the image is laid out here.
"""

from __future__ import annotations

from cpo_pipeline.storage import content_hash

# Our own wording of the paper's user turn (this is a patient's chest radiograph; determine the
# disease). The image goes before it: TRL's `prepare_multimodal_messages` puts the image
# placeholder at the start of the first user turn.
DEFAULT_REQUEST = (
    "This is a chest radiograph of a patient. Reason through what the image shows, then "
    "determine the patient's disease."
)


def prompt_hash(request: str) -> str:
    """The request's `content_hash`, 16 hex digits: stored on every row, so a trainer can tell
    sets built with different wording apart."""
    if not request.strip():
        raise ValueError("the request of the user turn is empty")
    return content_hash(request)[:16]


def user_content(turn: dict, image=None) -> list[dict]:
    """A user turn's content with the image first, as TRL's `prepare_multimodal_messages`
    lays it out (`image` None: a placeholder, the image passed to the processor beside)."""
    text = turn["content"] if isinstance(turn["content"], str) else " ".join(
        part.get("text", "") for part in turn["content"] if part.get("type") == "text")
    picture = {"type": "image"} if image is None else {"type": "image", "image": image}
    return [picture, {"type": "text", "text": text}]


def multimodal_prompt(example: dict, image=None) -> list[dict]:
    """The prompt turns of an exported example (a pair's `prompt`, or an SFT row's `messages`
    before the answer), the first carrying the image (`user_content`)."""
    turns = example["prompt"] if "prompt" in example else example["messages"][:-1]
    return [{**turn, "content": user_content(turn, image)} if index == 0 else turn
            for index, turn in enumerate(turns)]

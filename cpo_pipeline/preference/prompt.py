"""The user turn every training example starts with: the radiograph and the request."""

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


def user_turn(request: str) -> list[dict[str, str]]:
    """The prompt in TRL's conversational format (string content; the image is added by TRL)."""
    return [{"role": "user", "content": request}]

"""The tiny vision-language model: it saves and reloads offline, its tokenizer and chat template fit
the trajectory format, and TRL's vision collators feed it for DPO, SFT and generation."""

import math

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
from trl.trainer.dpo_trainer import DataCollatorForVisionPreference
from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

from cpo_pipeline.radiology.answer_format import format_trajectory, parse_trajectory
from cpo_pipeline.training.tiny_model import (
    TinyModelSpec,
    build_model,
    build_tiny_model,
    pretrain_vision,
    train_tokenizer,
)

QUESTION = "Describe the findings of this chest radiograph and name the disease."
NORMAL = format_trajectory(
    "The lungs are clear. No pleural effusion or pneumothorax. The heart size is normal.",
    ["No Finding"],
)
PNEUMONIA = format_trajectory(
    "Focal consolidation in the right lower lobe. No pleural effusion.",
    ["Consolidation", "Pneumonia"],
)
EFFUSION = format_trajectory(
    "Blunting of the left costophrenic angle. The heart is enlarged.",
    ["Cardiomegaly", "Pleural Effusion"],
)
CORPUS = (QUESTION, NORMAL, PNEUMONIA, EFFUSION)
SPEC = TinyModelSpec()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(CORPUS, SPEC, out_dir=tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def processor(tiny_dir):
    return AutoProcessor.from_pretrained(tiny_dir)


@pytest.fixture
def model(tiny_dir):
    return AutoModelForImageTextToText.from_pretrained(tiny_dir)


def radiograph(seed: int) -> Image.Image:
    """An 8-bit grayscale portrait image, the shape and mode ingestion stores."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(56, 40), dtype=np.uint8)
    return Image.fromarray(pixels, mode="L")


def user(content: str | list[dict]) -> dict:
    return {"role": "user", "content": content}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def test_saved_directory_reloads_offline_with_the_built_weights(tiny_dir, processor, model):
    built = build_model(train_tokenizer(CORPUS, vocab_size=SPEC.vocab_size), SPEC).state_dict()
    reloaded = model.state_dict()

    assert type(processor).__name__ == "LlavaProcessor"
    assert processor.image_processor.size == {"height": SPEC.image_size, "width": SPEC.image_size}
    assert processor.image_processor.do_center_crop is False
    assert (tiny_dir / "model.safetensors").is_file()
    assert reloaded.keys() == built.keys()
    assert all(torch.equal(reloaded[name], built[name]) for name in built)


def test_the_same_seed_gives_identical_weights_and_another_seed_does_not(tmp_path):
    def weights(seed: int) -> dict[str, torch.Tensor]:
        saved = build_tiny_model(CORPUS, TinyModelSpec(seed=seed), out_dir=tmp_path / str(seed))
        return AutoModelForImageTextToText.from_pretrained(saved).state_dict()

    first, again, other = weights(7), weights(7), weights(8)

    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not torch.equal(first["lm_head.weight"], other["lm_head.weight"])


def test_building_leaves_the_callers_random_state_alone():
    tokenizer = train_tokenizer(CORPUS)
    before = torch.random.get_rng_state()

    build_model(tokenizer, SPEC)

    assert torch.equal(torch.random.get_rng_state(), before)


def test_tokenizer_round_trips_a_trajectory_with_each_marker_one_token(processor):
    tokenizer = processor.tokenizer
    ids = tokenizer.encode(EFFUSION, add_special_tokens=False)

    assert tokenizer.decode(ids) == EFFUSION
    assert parse_trajectory(tokenizer.decode(ids)).diagnoses == ("Cardiomegaly", "Pleural Effusion")
    assert tokenizer.convert_ids_to_tokens(ids[0]) == "<think>"
    assert "</think>" in tokenizer.convert_ids_to_tokens(ids)


def test_every_answer_label_after_is_or_a_comma_is_one_token_of_its_own(processor):
    from cpo_pipeline.radiology.chexpert import DISEASES, NO_FINDING

    tokenizer = processor.tokenizer
    labels = (*DISEASES, NO_FINDING)
    line = "The disease of this patient is " + ", ".join(labels) + "."
    pieces = tokenizer.convert_ids_to_tokens(tokenizer.encode(line, add_special_tokens=False))
    decoded = [tokenizer.convert_tokens_to_string([piece]) for piece in pieces]

    assert decoded[-len(labels) * 2:] == [part for label in labels
                                         for part in (f" {label}", ",")][:-1] + ["."]
    # The same words inside a sentence stay ordinary text: only the spaced label is one token.
    assert tokenizer.decode(tokenizer.encode("Pleural effusion.", add_special_tokens=False)) == (
        "Pleural effusion.")


def test_tokenizer_round_trips_words_it_never_saw(processor):
    text = "Pneumopéricarde — 2 cm, unchanged since 2019."

    assert processor.tokenizer.decode(processor.tokenizer.encode(text)) == text


def test_chat_template_prompt_ends_with_the_assistant_generation_prompt(processor):
    # The list form is what TRL's prepare_multimodal_messages makes of a string user turn.
    messages = [user([{"type": "image"}, {"type": "text", "text": QUESTION}])]

    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)

    assert prompt == f"<s><|user|>\n<image>{QUESTION}</s><|assistant|>\n"


def test_chat_template_renders_an_answered_turn_as_the_prompt_then_the_answer(processor):
    conversation = [{"role": "system", "content": "Be brief."}, user(QUESTION), assistant(NORMAL)]

    rendered = processor.apply_chat_template(conversation)

    assert rendered == (
        f"<s><|system|>\nBe brief.</s><|user|>\n{QUESTION}</s><|assistant|>\n{NORMAL}</s>"
    )


def test_one_image_becomes_one_token_per_patch(processor):
    batch = processor(images=[radiograph(0)], text=["<image>"], return_tensors="pt")

    assert batch["pixel_values"].shape == (1, 3, SPEC.image_size, SPEC.image_size)
    assert batch["input_ids"].tolist() == [[processor.image_token_id] * SPEC.image_tokens]
    assert SPEC.image_tokens == 64


def test_a_portrait_radiograph_is_squashed_not_cropped(processor):
    # A bright band along the top eighth, where a centre crop of a 56 x 40 image would cut.
    pixels = np.zeros((56, 40), dtype=np.uint8)
    pixels[:7] = 255

    batch = processor(
        images=[Image.fromarray(pixels, mode="L")], text=["<image>"], return_tensors="pt"
    )
    red = batch["pixel_values"][0, 0]

    assert red[0].min() > 1.5  # white after CLIP normalisation
    assert red[-1].max() < -1.5  # black


def test_vision_preference_collator_lays_out_chosen_rows_then_rejected_rows(processor, model):
    examples = [
        {
            "images": [radiograph(1)],
            "prompt": [user(QUESTION)],
            "chosen": [assistant(NORMAL)],
            "rejected": [assistant(PNEUMONIA)],
        },
        {
            "images": [radiograph(2)],
            "prompt": [user(QUESTION)],
            "chosen": [assistant(EFFUSION)],
            "rejected": [assistant(NORMAL)],
        },
    ]

    batch = DataCollatorForVisionPreference(processor)(examples)
    with torch.no_grad():
        logits = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            pixel_values=batch["pixel_values"],
        ).logits

    completions = [
        processor.tokenizer.decode(row[mask.bool()])
        for row, mask in zip(batch["input_ids"], batch["completion_mask"], strict=True)
    ]
    assert completions == [f"{NORMAL}</s>", f"{EFFUSION}</s>", f"{PNEUMONIA}</s>", f"{NORMAL}</s>"]
    assert batch["pixel_values"].shape == (4, 3, SPEC.image_size, SPEC.image_size)
    assert (batch["input_ids"] == processor.image_token_id).sum(dim=1).tolist() == [
        SPEC.image_tokens
    ] * 4
    assert logits.shape == (*batch["input_ids"].shape, len(processor.tokenizer))
    assert torch.isfinite(logits).all()


def test_vision_sft_collator_trains_one_step_on_the_answer_only(processor, model):
    examples = [
        {"images": [radiograph(3)], "messages": [user(QUESTION), assistant(NORMAL)]},
        {"images": [radiograph(4)], "messages": [user(QUESTION), assistant(PNEUMONIA)]},
    ]
    collator = DataCollatorForVisionLanguageModeling(processor, assistant_only_loss=True)

    batch = collator(examples)
    model.train()
    loss = model(**batch).loss
    loss.backward()

    targets = [processor.tokenizer.decode(row[row != -100]) for row in batch["labels"]]
    assert targets == [f"{NORMAL}</s>", f"{PNEUMONIA}</s>"]
    assert math.isfinite(loss.item())
    # A random model is near-uniform over the vocabulary, so the cross-entropy starts near log V.
    assert abs(loss.item() - math.log(len(processor.tokenizer))) < 0.5
    # The answer's gradient reaches the vision tower through the projector.
    patch_grad = model.model.vision_tower.embeddings.patch_embedding.weight.grad
    assert torch.isfinite(patch_grad).all()
    assert patch_grad.abs().sum() > 0


def test_generate_continues_a_processed_prompt_with_new_tokens(processor, model):
    messages = [
        user([{"type": "image", "image": radiograph(5)}, {"type": "text", "text": QUESTION}])
    ]
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    prompt_length = inputs["input_ids"].shape[1]

    model.eval()
    output = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)

    assert output.shape == (1, prompt_length + 4)
    assert torch.equal(output[:, :prompt_length], inputs["input_ids"])
    assert isinstance(processor.decode(output[0, prompt_length:], skip_special_tokens=True), str)


def _marked(seed: int, marked: bool) -> Image.Image:
    """Noise, with a bright square in the upper left when `marked`."""
    pixels = np.random.default_rng(seed).integers(0, 120, size=(32, 32), dtype=np.uint8)
    if marked:
        pixels[2:12, 2:12] = 255
    return Image.fromarray(pixels, mode="L")


def test_vision_pretraining_teaches_the_tower_the_labels_and_only_the_tower(tiny_dir, processor):
    model = AutoModelForImageTextToText.from_pretrained(tiny_dir)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    marked = [i % 2 == 0 for i in range(96)]
    images = [_marked(i, m) for i, m in enumerate(marked)]
    label_sets = [("Lung Lesion",) if m else ("No Finding",) for m in marked]
    state = torch.get_rng_state()

    losses = pretrain_vision(model, processor, images, label_sets, ("Lung Lesion", "No Finding"),
                             epochs=6, seed=0, batch_size=16)

    assert torch.equal(torch.get_rng_state(), state)
    assert losses[-1] < 0.5 * losses[0]
    changed = {name for name, value in model.state_dict().items()
               if not torch.equal(value, before[name])}
    assert changed and all(".vision_tower." in f".{name}" for name in changed)
    assert not model.model.vision_tower.training


def test_the_small_size_keeps_the_layout_at_about_forty_million_parameters(tmp_path):
    from cpo_pipeline.training.config import OFFLINE_SIZES as NAMES
    from cpo_pipeline.training.tiny_model import OFFLINE_SIZES

    small = OFFLINE_SIZES["small"]
    tokenizer = train_tokenizer(CORPUS, vocab_size=small.vocab_size)
    model = build_model(tokenizer, small)
    parameters = sum(p.numel() for p in model.parameters())

    assert tuple(OFFLINE_SIZES) == NAMES and OFFLINE_SIZES["tiny"] == SPEC
    assert 3e7 < parameters < 4.5e7
    assert small.image_tokens == 64
    pixels = torch.zeros(1, 3, small.image_size, small.image_size)
    embedded = model.model.vision_tower(pixel_values=pixels).last_hidden_state
    assert embedded.shape == (1, small.image_tokens + 1, small.vision_hidden_size)

"""The tiny LLaVA-style vision-language model the embedded demo and the tests train, built offline.

Nothing is downloaded: the tokenizer is trained on the texts it will see, the weights are random
(seeded), and the directory `build_tiny_model` writes reloads with `AutoProcessor` and
`AutoModelForImageTextToText` like any hub checkpoint. Sized so a training step on two CPU cores
takes milliseconds. Its vision tower can be pretrained on labelled images first
(`pretrain_vision`), as a real VLM's encoder was before anyone tunes it: a random tower, frozen
as the paper's recipe freezes it, gives the language model nothing to condition on.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cpo_pipeline.radiology.chexpert import DISEASES, NO_FINDING

if TYPE_CHECKING:
    from transformers import LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
IMAGE_TOKEN = "<image>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
# The trajectory's own markers (see radiology.answer_format): single tokens, so the model emits
# them in one step, but not special, so decoding with `skip_special_tokens` keeps them for the
# answer parser.
THINK_TOKENS = ("<think>", "</think>")
# Each answer label, with the space before it, is one token. Learned BPE pieces are shared:
# " Consolidation" was `␣C|on|solidation` at 512 merges and " Pleural", " Lung", " No" open
# two labels each even at full vocabulary, so a preference step that pushes a rejected label's
# first piece down after "is" pushes down every label starting with it, and the answer line
# broke ("isonsolidation"). One token per label makes choosing a label one decision.
LABEL_TOKENS = tuple(f" {label}" for label in (*DISEASES, NO_FINDING))

# Turns are `<|role|>\n{content}</s>` with nothing between them, so a completion ends at its
# `</s>`. The generation prompt `<|assistant|>\n` is exactly the start of a rendered assistant
# turn: TRL cuts prompt from completion at the longest common prefix of the prompt rendered alone
# and of prompt + completion. `{% generation %}` marks what the model says, for SFT's
# `assistant_only_loss`. Content is a string or the list of parts TRL's
# `prepare_multimodal_messages` makes; each image part becomes one `<image>`, which the processor
# expands to the vision tower's patch count.
CHAT_TEMPLATE = (
    "{% macro render(content) %}"
    "{% if content is string %}{{ content }}"
    "{% else %}{% for part in content %}"
    "{% if part['type'] == 'image' %}{{ '" + IMAGE_TOKEN + "' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% endmacro %}"
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ render(message['content']) }}{{ eos_token }}{% endgeneration %}"
    "{% else %}{{ render(message['content']) }}{{ eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class TinyModelSpec:
    """Sizes of the tiny model; `vocab_size` is a ceiling (a small corpus yields fewer merges)."""

    # 64 px in 8-px patches: 64 image tokens, where each of the paper's five findings is
    # resolvable (at 32 px a pneumothorax rim was 1-2 px and SFT's answer-line AUC on it was
    # 0.52; at 64 px a pretrained tower's probe reaches 0.86-0.99 on it, by pretraining and
    # cohort size: benchmarks/bench_vision_probe.py).
    image_size: int = 64
    patch_size: int = 8
    vision_hidden_size: int = 64
    vision_layers: int = 2
    vision_heads: int = 4
    text_hidden_size: int = 64
    text_layers: int = 2
    text_heads: int = 4
    text_intermediate_size: int = 128
    vocab_size: int = 1024
    seed: int = 0

    @property
    def image_tokens(self) -> int:
        """How many `<image>` tokens one image becomes: one per patch."""
        return (self.image_size // self.patch_size) ** 2


# The sizes `TrainingConfig.tiny_model_size` names. 'small' keeps the layout and grows every
# dimension: 64 px images in 8 px patches (64 image tokens), a 4-layer 256-wide CLIP tower, an
# 8-layer 512-wide Llama (about 38 M parameters): too slow to train on two CPU cores, minutes
# on one GPU.
OFFLINE_SIZES = {
    "tiny": TinyModelSpec(),
    "small": TinyModelSpec(image_size=64, patch_size=8, vision_hidden_size=256, vision_layers=4,
                           vision_heads=8, text_hidden_size=512, text_layers=8, text_heads=8,
                           text_intermediate_size=2048, vocab_size=2048),
}


def train_tokenizer(
    texts: Iterable[str], *, vocab_size: int = TinyModelSpec.vocab_size
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on `texts`, with the chat template and the image token.

    Byte-level, so any text round-trips exactly (`decode(encode(x)) == x`), words the corpus never
    saw included. The special tokens take ids 0.. in the order pad, bos, eos, image, roles.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, IMAGE_TOKEN, *ROLE_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.add_tokens([AddedToken(token, normalized=False)
                          for token in (*THINK_TOKENS, *LABEL_TOKENS)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        chat_template=CHAT_TEMPLATE,
        # Cleaning up would drop the space before punctuation and break the round trip.
        clean_up_tokenization_spaces=False,
    )


def build_image_processor(spec: TinyModelSpec):
    """A PIL-only CLIP image processor (no torchvision) at `spec`'s image size.

    Images are squashed to a square rather than centre-cropped: a crop of a portrait radiograph
    cuts off the costophrenic angles, where effusions show. Grayscale images are converted to RGB.
    """
    from transformers import CLIPImageProcessorPil

    square = {"height": spec.image_size, "width": spec.image_size}
    return CLIPImageProcessorPil(size=square, crop_size=square, do_center_crop=False,
                                 do_convert_rgb=True)


def build_processor(tokenizer: PreTrainedTokenizerFast, spec: TinyModelSpec) -> LlavaProcessor:
    """The LLaVA processor: `build_image_processor`'s image processor and `tokenizer`."""
    from transformers import LlavaProcessor

    return LlavaProcessor(
        image_processor=build_image_processor(spec),
        tokenizer=tokenizer,
        patch_size=spec.patch_size,
        # CLIP yields a CLS embedding before the patches; "default" drops it, so the count of
        # image tokens is exactly the patch count.
        num_additional_image_tokens=1,
        vision_feature_select_strategy="default",
        image_token=IMAGE_TOKEN,
        chat_template=CHAT_TEMPLATE,
    )


def vision_config(spec: TinyModelSpec):
    """The CLIP vision tower's config at `spec`'s sizes."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        image_size=spec.image_size,
        patch_size=spec.patch_size,
        hidden_size=spec.vision_hidden_size,
        intermediate_size=4 * spec.vision_hidden_size,
        num_hidden_layers=spec.vision_layers,
        num_attention_heads=spec.vision_heads,
    )


def build_vision_tower(spec: TinyModelSpec, *, seed: int):
    """A randomly initialised tower alone (`CLIPVisionModel`, the module LLaVA holds as
    `model.vision_tower`), identical for identical seeds; the caller's RNG is left as it was."""
    import torch
    from transformers import CLIPVisionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CLIPVisionModel(vision_config(spec)).eval()


def build_model(
    tokenizer: PreTrainedTokenizerFast, spec: TinyModelSpec
) -> LlavaForConditionalGeneration:
    """A randomly initialised `LlavaForConditionalGeneration`, identical for identical seeds.

    Seeds a forked RNG, so the caller's torch random state is left as it was.
    """
    import torch
    from transformers import (
        GenerationConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )

    special_ids = {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    vision = vision_config(spec)
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.text_hidden_size,
        intermediate_size=spec.text_intermediate_size,
        num_hidden_layers=spec.text_layers,
        num_attention_heads=spec.text_heads,
        num_key_value_heads=spec.text_heads,
        **special_ids,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=spec.image_tokens,
        vision_feature_select_strategy="default",
        # The last layer, not LLaVA's usual second-to-last: with two layers, -2 would leave the
        # last one out of the forward pass, untrained.
        vision_feature_layer=-1,
        **special_ids,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = LlavaForConditionalGeneration(config)
    model.generation_config = GenerationConfig(**special_ids)
    return model


# Changes with what `pretrain_vision` does, so a run key (training/launch.py) tells towers
# pretrained differently apart. 3: one-cycle schedule, mean-pooled head, unweighted labels. (2,
# a mean+max head with balanced labels, probed better on pneumothorax, but SFT on its features
# fell to 0.44 exact answers on validate against 0.53; see benchmarks/README.md.)
VISION_PRETRAINING_VERSION = "3"


def pretrain_vision(
    model: LlavaForConditionalGeneration, processor: LlavaProcessor, images: Sequence,
    label_sets: Sequence[Collection[str]], labels: Sequence[str], *, epochs: int, seed: int,
    learning_rate: float = 2e-3, batch_size: int = 64,
) -> list[float]:
    """`pretrain_tower` on `model`'s vision tower; returns each epoch's loss."""
    return pretrain_tower(model.model.vision_tower, processor.image_processor, images,
                          label_sets, labels, epochs=epochs, seed=seed,
                          learning_rate=learning_rate, batch_size=batch_size)


def pretrain_tower(
    tower, image_processor, images: Sequence, label_sets: Sequence[Collection[str]],
    labels: Sequence[str], *, epochs: int, seed: int, learning_rate: float = 2e-3,
    batch_size: int = 64,
) -> list[float]:
    """Train a vision tower to tell `labels` apart in `images`; returns each epoch's loss.

    A linear head on the mean of the tower's patch embeddings predicts, per image, which of
    `labels` its set names (multi-label binary cross-entropy); the head is discarded afterwards,
    the tower keeps what it learned. Only the tower's weights change, and the caller's torch
    random state is left as it was. This stands in for the image-text pretraining a real VLM's
    encoder had: what the experiments then measure is what SFT and preference tuning add.
    The learning rate follows a one-cycle schedule peaking at `learning_rate` (a tenth of the
    steps warming up, then annealed to nearly zero).
    """
    import torch

    # On a GPU when there is one (the 'small' size's tower is slow on CPU), back afterwards.
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pixels = image_processor(
        [image.convert("RGB") for image in images], return_tensors="pt")["pixel_values"]
    targets = torch.tensor([[label in chosen for label in labels] for chosen in label_sets],
                           dtype=torch.float32)
    losses = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = torch.nn.Linear(tower.config.hidden_size, len(labels)).to(device)
        tower.to(device)
        optimizer = torch.optim.AdamW([*tower.parameters(), *head.parameters()],
                                      lr=learning_rate, weight_decay=0.01)
        steps = max(epochs * -(-len(pixels) // batch_size), 1)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=learning_rate, total_steps=steps, pct_start=0.1)
        tower.train()
        for _ in range(epochs):
            order, total = torch.randperm(len(pixels)), 0.0
            for start in range(0, len(pixels), batch_size):
                batch = order[start:start + batch_size]
                # Patch embeddings only: "default" feature selection drops the CLS token too.
                embedded = tower(pixel_values=pixels[batch].to(device)).last_hidden_state[
                    :, 1:].mean(1)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    head(embedded), targets[batch].to(device))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                total += loss.item() * len(batch)
            losses.append(total / max(len(pixels), 1))
        tower.eval()
        tower.to("cpu")
    return losses


def build_tiny_model(
    texts: Iterable[str], spec: TinyModelSpec = TinyModelSpec(), *, out_dir: Path,
    vision_examples: tuple[Sequence, Sequence[Collection[str]], Sequence[str]] | None = None,
    vision_epochs: int = 0, vision_tower: Mapping | None = None,
) -> Path:
    """Train the tokenizer on `texts`, build processor and model, pretrain the vision tower on
    `vision_examples` (images, their label sets, the labels) for `vision_epochs` or load
    `vision_tower` (a pretrained tower's state dict, `vision_corpus.pretrained_tower`) into it,
    and save both into `out_dir`.

    The directory holds safetensors weights and reloads offline with `AutoProcessor` and
    `AutoModelForImageTextToText`; it is also what DPO's reference model is loaded from.
    """
    tokenizer = train_tokenizer(texts, vocab_size=spec.vocab_size)
    processor = build_processor(tokenizer, spec)
    model = build_model(tokenizer, spec)
    if vision_tower is not None:
        model.model.vision_tower.load_state_dict(vision_tower)
    elif vision_examples is not None and vision_epochs > 0:
        images, label_sets, labels = vision_examples
        pretrain_vision(model, processor, images, label_sets, labels, epochs=vision_epochs,
                        seed=spec.seed)
    processor.save_pretrained(out_dir)
    model.save_pretrained(out_dir)
    return out_dir

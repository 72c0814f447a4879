"""Small training sets and models the training tests build themselves, offline."""

from pathlib import Path

import numpy as np
from datasets import Dataset, Features, Image, List, Value
from PIL import Image as PILImage

from cpo_pipeline.preference.prompt import DEFAULT_REQUEST
from cpo_pipeline.radiology.answer_format import format_trajectory

ANSWERS = (
    format_trajectory("The lungs are clear. No pleural effusion.", ["No Finding"]),
    format_trajectory("Right lower lobe consolidation.", ["Consolidation", "Pneumonia"]),
    format_trajectory("Small left pleural effusion.", ["Pleural Effusion"]),
)
_TURN = {"role": Value("string"), "content": Value("string")}


def radiograph(path: Path, seed: int) -> str:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(48, 40), dtype=np.uint8)
    PILImage.fromarray(pixels, mode="L").save(path)
    return str(path)


def save_sft_set(directory: Path, rows: int = 6, *, with_images: bool = True) -> Path:
    """An SFT split in the exported layout (images by path), answers from `ANSWERS`."""
    directory.mkdir(parents=True, exist_ok=True)
    columns: dict = {"messages": [[{"role": "user", "content": DEFAULT_REQUEST},
                                   {"role": "assistant", "content": ANSWERS[i % len(ANSWERS)]}]
                                  for i in range(rows)]}
    features = {"messages": List(_TURN)}
    if with_images:
        columns["images"] = [[radiograph(directory.parent / f"{directory.name}-{i}.png", i)]
                             for i in range(rows)]
        features["images"] = List(Image())
    Dataset.from_dict(columns, features=Features(features)).save_to_disk(str(directory / "set"))
    return directory / "set"


def save_pair_set(directory: Path, rows: int = 6) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    columns = {
        "images": [[radiograph(directory.parent / f"{directory.name}-{i}.png", i)]
                   for i in range(rows)],
        "prompt": [[{"role": "user", "content": DEFAULT_REQUEST}] for _ in range(rows)],
        "chosen": [[{"role": "assistant", "content": ANSWERS[i % 3]}] for i in range(rows)],
        "rejected": [[{"role": "assistant", "content": ANSWERS[(i + 1) % 3]}]
                     for i in range(rows)],
    }
    features = Features({"images": List(Image()), "prompt": List(_TURN), "chosen": List(_TURN),
                         "rejected": List(_TURN)})
    Dataset.from_dict(columns, features=features).save_to_disk(str(directory / "set"))
    return directory / "set"

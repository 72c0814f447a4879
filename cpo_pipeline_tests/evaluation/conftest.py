import numpy as np
import pytest
from PIL import Image

from cpo_pipeline.preference.prompt import DEFAULT_REQUEST
from cpo_pipeline.radiology.answer_format import format_trajectory

ANSWERS = [format_trajectory("Small left pleural effusion.", ["Pleural Effusion"]),
           format_trajectory("The lungs are clear.", ["No Finding"])]


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    from cpo_pipeline.training.tiny_model import build_tiny_model

    folder = tmp_path_factory.mktemp("tiny")
    return build_tiny_model([DEFAULT_REQUEST, *ANSWERS] * 20, out_dir=folder / "model")


@pytest.fixture(scope="session")
def tiny(tiny_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    return (AutoModelForImageTextToText.from_pretrained(tiny_dir),
            AutoProcessor.from_pretrained(tiny_dir))


def example(folder, seed):
    """An exported-SFT-split row: the request, a factual answer, a radiograph by path."""
    path = folder / f"{seed}.png"
    pixels = np.random.default_rng(seed).integers(0, 256, size=(40, 36), dtype=np.uint8)
    Image.fromarray(pixels, mode="L").save(path)
    return {"messages": [{"role": "user", "content": DEFAULT_REQUEST},
                         {"role": "assistant", "content": ANSWERS[seed % 2]}],
            "images": [str(path)], "study_id": 100 + seed, "subject_id": 10 + seed // 2}

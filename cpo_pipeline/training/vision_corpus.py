"""A rendered corpus the tiny model's vision tower is pretrained on, apart from any cohort.

A real VLM's image encoder was pretrained on far more images than anyone's fine-tuning set, and
every fine-tuning run starts from the same encoder weights. This module gives the offline model
the same footing: `render_corpus` draws `count` frontal phantom radiographs (PA or AP, 128 px,
each CheXpert finding painted independently with probability `FINDING_SHARE`, where the phantom
places it at random), written as DICOM and decoded by the ingestion's own reader, so the pixels
are exactly what training reads from a cohort. `pretrained_tower` pretrains a tower on it
(`tiny_model.pretrain_tower`) once per tower size, corpus and schedule, and keeps the weights
in a cache folder every later run loads them from; the seed of the training run does not enter,
just as a fine-tuning seed does not retrain CLIP.

Imported only by the training process (torch and transformers at call time).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS, DISEASES, NO_FINDING
from cpo_pipeline.storage import content_hash

if TYPE_CHECKING:
    from PIL import Image

# Changes with what the corpus holds or how it is drawn: part of every cached tower's key and
# of the tiny model's identity in every run key (launch.model_identity).
CORPUS_VERSION = "1"
# Each finding's chance of being painted on an image: ~1.6 findings per image, 19% with none,
# ~12% positives of each, so the cohort's rarest findings (pneumothorax ~4%) get hundreds of
# examples where a 2,500-patient cohort's train split has ~150.
FINDING_SHARE = 0.12
AP_SHARE = 0.4  # of frontal images (the demo cohort: 37% of studies are portable AP)
SIDE = 128  # what the CPU experiments render their phantoms at (bench_support.IMAGE_SIZE)
PAINTED = tuple(label for label in CHEXPERT_LABELS if label != NO_FINDING)
# What the tower is pretrained to tell apart: every painted label, and No Finding.
LABELS = CHEXPERT_LABELS
_SEED_SALT = 0xC0FFEE  # keeps the corpus's draws apart from any cohort's with the same seed


@dataclass(frozen=True)
class CorpusImage:
    """One image of the corpus before it is rendered: its view and what it shows."""

    index: int
    view: str
    findings: tuple[str, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        """What the pretraining head learns from it: its findings, else No Finding (Support
        Devices alone is no disease)."""
        if any(finding in DISEASES for finding in self.findings):
            return self.findings
        return (*self.findings, NO_FINDING)


def plan_corpus(count: int, seed: int = 0) -> list[CorpusImage]:
    """The corpus's views and findings; the same `count` and `seed` give the same plan, and a
    larger count extends a smaller one's plan."""
    if count < 1:
        raise ValueError(f"a vision corpus needs at least 1 image, got {count}")
    plans = []
    for index in range(count):
        rng = np.random.default_rng([_SEED_SALT, seed, index])
        view = "AP" if rng.random() < AP_SHARE else "PA"
        painted = rng.random(len(PAINTED)) < FINDING_SHARE
        plans.append(CorpusImage(index, view, tuple(
            label for label, shown in zip(PAINTED, painted, strict=True) if shown)))
    return plans


def _render(plan: CorpusImage, seed: int, folder: str) -> Image.Image:
    from cpo_pipeline.demo.dicom import write_dx_dicom
    from cpo_pipeline.demo.phantom import render_chest_phantom
    from cpo_pipeline.ingestion.dicom_decode import decode_source

    rng = np.random.default_rng([_SEED_SALT, seed, plan.index, 1])
    pixels = render_chest_phantom({label: 1.0 for label in plan.findings}, plan.view,
                                  (SIDE, SIDE), rng)
    path = Path(folder) / f"{plan.index}.dcm"
    write_dx_dicom(path, pixels, subject_id=10_000_000 + plan.index % 10_000_000,
                   study_id=50_000_000 + plan.index % 10_000_000,
                   dicom_id=f"{plan.index:08x}-00000000-00000000-00000000-00000000",
                   view_position=plan.view, study_date="21500101", study_time="120000",
                   uid_seed=f"vision-corpus-{seed}")
    image = decode_source(str(path), SIDE).image
    image.load()
    path.unlink()
    return image


def _render_chunk(plans: Sequence[CorpusImage], seed: int) -> list[Image.Image]:
    with tempfile.TemporaryDirectory(prefix="vision-corpus-") as folder:
        return [_render(plan, seed, folder) for plan in plans]


def render_corpus(count: int, seed: int = 0, workers: int | None = None
                  ) -> tuple[list[Image.Image], list[tuple[str, ...]], tuple[str, ...]]:
    """`count` rendered images, their label sets and the labels (as `modeling.labelled_images`
    returns a cohort's), over `workers` processes (default: every core)."""
    plans = plan_corpus(count, seed)
    workers = max(1, min(workers or os.cpu_count() or 1, -(-count // 256)))
    chunks = [plans[start::workers] for start in range(workers)]
    if workers == 1:
        rendered = [_render_chunk(chunks[0], seed)]
    else:
        with ProcessPoolExecutor(workers) as pool:
            rendered = list(pool.map(_render_chunk, chunks, [seed] * workers))
    images: list = [None] * count
    for start, chunk in enumerate(rendered):
        images[start::workers] = chunk
    return images, [plan.labels for plan in plans], LABELS


def tower_key(vision_config: dict, count: int, epochs: int, seed: int) -> str:
    """What decides a corpus-pretrained tower's weights: its size, the corpus, the schedule."""
    from cpo_pipeline.training.tiny_model import VISION_PRETRAINING_VERSION

    return content_hash({"vision": vision_config, "corpus": count, "epochs": epochs,
                         "seed": seed, "corpus_version": CORPUS_VERSION,
                         "pretraining": VISION_PRETRAINING_VERSION})


def pretrained_tower(spec, count: int, epochs: int, cache: Path | None, seed: int = 0) -> dict:
    """The state dict of a vision tower of `spec`'s size pretrained for `epochs` on a corpus
    of `count` images: read from `cache` when a run has already made it, else made (and kept
    there, when `cache` is given). Leaves the caller's torch random state as it was."""
    from safetensors.torch import load_file, save_file

    from cpo_pipeline.training.tiny_model import (
        build_image_processor,
        build_vision_tower,
        pretrain_tower,
    )

    tower = build_vision_tower(spec, seed=seed)
    key = tower_key(tower.config.to_diff_dict(), count, epochs, seed)
    target = cache / key[:16] / "tower.safetensors" if cache is not None else None
    if target is not None and target.is_file():
        return load_file(target)
    images, label_sets, labels = render_corpus(count, seed)
    pretrain_tower(tower, build_image_processor(spec), images, label_sets, labels,
                   epochs=epochs, seed=seed)
    state = {name: value.detach().clone().contiguous()
             for name, value in tower.state_dict().items()}
    if target is not None:
        cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tower-", dir=cache))
        save_file(state, staging / "tower.safetensors",
                  metadata={"corpus": str(count), "epochs": str(epochs), "seed": str(seed)})
        try:
            staging.rename(target.parent)
        except OSError:  # another run kept the same tower first: theirs is identical
            shutil.rmtree(staging, ignore_errors=True)
    return state

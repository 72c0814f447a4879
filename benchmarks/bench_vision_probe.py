"""Can the tiny model's vision tower see the paper's five findings? (issue 28)

The offline model's language half can only learn to name what its image tokens carry. This
bench builds one synthetic cohort through the real chain (`bench_support.build_cohort`: DICOMs,
ingestion, the SFT set), takes the SFT set's train and validate images exactly as training
reads them, and fits a linear probe (logistic regression on standardised features) per answer
label on the train split, scored by AUC on validate, for three inputs:

- raw pixels: the 64x64 image the processor hands the tower, flattened (the floor any encoder
  should beat on global findings, and what a fine finding needs more than);
- a random tower: the tower as built, before pretraining;
- the pretrained tower: after `tiny_model.pretrain_vision` for the epochs training uses
  (`TrainingConfig.tiny_vision_pretraining_epochs`), on the train split only.

Tower features are the mean and the maximum of its patch embeddings, what the language model
reads as image tokens. The gate: the pretrained tower reaches AUC >= 0.90 on validate for each
of the five; the bench exits 1 when one does not.

    .venv/bin/python benchmarks/bench_vision_probe.py [--patients 2500] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_support import build_cohort, clean_environment

GATE = 0.90
INPUTS = ("raw pixels", "random tower", "pretrained tower")
CORPUS = "corpus tower"


def probe_aucs(train: np.ndarray, train_sets: list, validate: np.ndarray, validate_sets: list,
               labels: tuple[str, ...]) -> dict[str, float]:
    """Per label, the validate AUC of a logistic-regression probe fit on `train` (features
    standardised with the train split's mean and spread); NaN where validate or train holds
    only one class."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    mean, spread = train.mean(0), train.std(0) + 1e-6
    train, validate = (train - mean) / spread, (validate - mean) / spread
    aucs = {}
    for label in labels:
        fit_y = np.array([label in named for named in train_sets])
        score_y = np.array([label in named for named in validate_sets])
        if len(set(fit_y)) < 2 or len(set(score_y)) < 2:
            aucs[label] = float("nan")
            continue
        probe = LogisticRegression(C=1.0, max_iter=3000).fit(train, fit_y)
        aucs[label] = float(roc_auc_score(score_y, probe.decision_function(validate)))
    return aucs


def tower_features(tower, pixels, batch_size: int = 256) -> np.ndarray:
    """Mean and maximum over the tower's patch embeddings (CLS left out), per image."""
    import torch

    out = []
    with torch.no_grad():
        for start in range(0, len(pixels), batch_size):
            hidden = tower(pixel_values=pixels[start:start + batch_size]).last_hidden_state[:, 1:]
            out.append(torch.cat([hidden.mean(1), hidden.amax(1)], dim=1).numpy())
    return np.concatenate(out)


def measure(data_root: Path, epochs: int, seed: int, corpus: int = 0,
            cache: Path | None = None) -> dict:
    """Every input's probe AUCs on the cohort under `data_root`, and the pretraining's time;
    with `corpus`, also a tower pretrained on a rendered corpus that size (kept in `cache`)."""
    from datasets import load_from_disk

    from cpo_pipeline import data_layout
    from cpo_pipeline.training.modeling import labelled_images
    from cpo_pipeline.training.tiny_model import (
        OFFLINE_SIZES,
        build_model,
        build_processor,
        pretrain_vision,
        train_tokenizer,
    )
    from cpo_pipeline.training.train import training_texts

    sft = data_layout.dataset(data_root, "sft_dataset")
    train, validate = (load_from_disk(str(sft / split)) for split in ("train", "validate"))
    train_images, train_sets, labels = labelled_images(train)
    validate_images, validate_sets, _ = labelled_images(validate)
    spec = OFFLINE_SIZES["tiny"]
    processor = build_processor(train_tokenizer(training_texts(train), vocab_size=spec.vocab_size),
                                spec)
    model = build_model(processor.tokenizer, spec)

    def pixels(images):
        return processor.image_processor([image.convert("RGB") for image in images],
                                         return_tensors="pt")["pixel_values"]

    train_pixels, validate_pixels = pixels(train_images), pixels(validate_images)
    tower = model.model.vision_tower.eval()
    features = {"raw pixels": (train_pixels[:, 0].flatten(1).numpy(),
                               validate_pixels[:, 0].flatten(1).numpy()),
                "random tower": (tower_features(tower, train_pixels),
                                 tower_features(tower, validate_pixels))}
    began = time.perf_counter()
    losses = pretrain_vision(model, processor, train_images, train_sets, labels, epochs=epochs,
                             seed=seed)
    pretrain_s = time.perf_counter() - began
    features["pretrained tower"] = (tower_features(tower, train_pixels),
                                    tower_features(tower, validate_pixels))
    timings = {"pretrain_s": pretrain_s}
    if corpus:
        from cpo_pipeline.training.vision_corpus import pretrained_tower

        began = time.perf_counter()
        tower.load_state_dict(pretrained_tower(spec, corpus, epochs, cache, seed=seed))
        timings["corpus_s"] = time.perf_counter() - began
        features[CORPUS] = (tower_features(tower, train_pixels),
                            tower_features(tower, validate_pixels))
    aucs = {name: probe_aucs(fit, train_sets, score, validate_sets, labels)
            for name, (fit, score) in features.items()}
    prevalence = {label: float(np.mean([label in named for named in validate_sets]))
                  for label in labels}
    return {"train_images": len(train_images), "validate_images": len(validate_images),
            "image_size": spec.image_size, "image_tokens": spec.image_tokens,
            "epochs": epochs, **timings, "corpus": corpus, "losses": losses,
            "validate_prevalence": prevalence, "auc": aucs}


def passes(result: dict) -> list[str]:
    """The five findings whose pretrained-tower AUC is below the gate (empty: it holds)."""
    from cpo_pipeline.evaluation.classification import PAPER_FIVE

    return [label for label in PAPER_FIVE
            if not result["auc"][gated(result)][label] >= GATE]


def gated(result: dict) -> str:
    """The tower training would use: the corpus tower when one was measured."""
    return CORPUS if CORPUS in result["auc"] else "pretrained tower"


def print_result(result: dict) -> None:
    from cpo_pipeline.evaluation.classification import PAPER_FIVE

    print(f"\nlinear-probe AUC on validate ({result['validate_images']} images; probes fit on "
          f"{result['train_images']} train images at {result['image_size']} px, "
          f"{result['image_tokens']} image tokens); tower pretrained {result['epochs']} epochs "
          f"in {result['pretrain_s']:.0f} s")
    if result.get("corpus"):
        print(f"  corpus tower: pretrained {result['epochs']} epochs on {result['corpus']} "
              f"rendered images in {result['corpus_s']:.0f} s (rendering included; a cached "
              "tower is only loaded)")
    inputs = list(result["auc"])
    print(f"  {'label':28s} {'prevalence':>10s} " + " ".join(f"{name:>16s}" for name in inputs))
    for label, prevalence in result["validate_prevalence"].items():
        star = "*" if label in PAPER_FIVE else " "
        print(f"{star} {label:28s} {prevalence:10.3f} "
              + " ".join(f"{result['auc'][name][label]:16.3f}" for name in inputs))
    failing = passes(result)
    print(f"\n* the paper's five; gate: {gated(result)} AUC >= {GATE} on each: "
          + ("holds" if not failing else "FAILS on " + ", ".join(failing)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=2500,
                        help="cohort size (default: the CPU experiment's)")
    parser.add_argument("--cohort-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0, help="the tower's and pretraining's seed")
    parser.add_argument("--epochs", type=int, help="pretraining epochs (default: training's, "
                        "TrainingConfig.tiny_vision_pretraining_epochs)")
    parser.add_argument("--corpus", type=int, default=0, help="also probe a tower pretrained "
                        "on a rendered corpus of this many images (TrainingConfig."
                        "tiny_vision_corpus_images); the gate then reads that tower")
    parser.add_argument("--data-root", type=Path, help="keep the cohort here; one already "
                        "there is reused (and corpus towers under its models/vision_tower)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    clean_environment()
    import torch

    from cpo_pipeline import data_layout
    from cpo_pipeline.training.config import TrainingConfig
    from cpo_pipeline.training.launch import VISION_TOWERS

    torch.set_num_threads(2)
    epochs = args.epochs if args.epochs is not None else TrainingConfig.tiny_vision_pretraining_epochs
    with tempfile.TemporaryDirectory() as scratch:
        data_root = args.data_root or Path(scratch)
        began = time.perf_counter()
        if not (data_layout.dataset(data_root, "sft_dataset") / "validate").is_dir():
            print(build_cohort(data_root, args.patients, args.cohort_seed), flush=True)
        print(f"cohort ready in {time.perf_counter() - began:.0f} s", flush=True)
        result = {"patients": args.patients, "cohort_seed": args.cohort_seed,
                  **measure(data_root, epochs, args.seed, args.corpus,
                            data_layout.models(args.data_root, VISION_TOWERS)
                            if args.data_root else None)}
    print_result(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    raise SystemExit(1 if passes(result) else 0)


if __name__ == "__main__":
    main()

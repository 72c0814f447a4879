"""Evaluation speed (issue 12): the metric computation for 10,000 generated reports.

Writes 10,000 reference findings with the demo report writer (labels sampled at MIMIC-CXR's
prevalences) and, as the "generated" side, a report the writer gives for labels that differ in
one finding a third of the time and an unparsable answer 2% of the time; 2,500 patients. Then
times, in this process:

- baseline: the irreducible part, the rule-based labeller over both texts and the COCO scorers
  (BLEU-1..4, ROUGE-L, CIDEr; METEOR with Java) once, no intervals;
- pipeline: every metric of the evaluation report: answer parsing, per-disease accuracy with
  1,000 patient-bootstrap resamples, clinical efficacy with its intervals, the NLG scores, the
  attribute-mention divergence, and synonym-swap variants of every thinking text.

    .venv/bin/python benchmarks/bench_evaluation.py [--reports 10000] [--no-meteor]

Then generation on the tiny offline model (its tokenizer trained on these reports): tokens/s of
`evaluation.inference.generate` (batched, left-padded, greedy) beside the same examples
generated one at a time. The model-evaluation asset reports the same figure per trained model.
And the likelihood probes: `inference.answer_line_scores` (the 13 answer lines after a thinking,
scored on one shared key-value cache of prompt, image and thinking) beside the baseline it
replaced, one padded batch of the 13 full sequences through the model; both give the same
scores, checked here.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd


def _corpus(reports: int, seed: int):
    from cpo_pipeline.demo.reports import sample_labels, write_findings
    from cpo_pipeline.radiology.answer_format import format_trajectory, positive_diseases
    from cpo_pipeline.radiology.chexpert import DISEASES, LABEL_POSITIVE
    from cpo_pipeline.radiology.labeller import no_finding

    rng = np.random.default_rng(seed)
    references, generated, labels = [], [], []
    for _ in range(reports):
        truth = sample_labels(rng)
        reference = write_findings(truth, rng)
        said = dict(truth)
        if rng.random() < 1 / 3:  # one finding wrong: added or dropped
            flipped = DISEASES[int(rng.integers(len(DISEASES)))]
            said[flipped] = None if said[flipped] == LABEL_POSITIVE else LABEL_POSITIVE
            said["No Finding"] = no_finding(said)
        findings = write_findings(said, rng)
        answer = ("I cannot tell." if rng.random() < 0.02 else
                  format_trajectory(findings, positive_diseases(said)))
        references.append(reference)
        generated.append(answer)
        labels.append(truth)
    subjects = rng.integers(0, reports // 4, size=reports)
    return references, generated, pd.DataFrame(labels), subjects


def _generation(references: list[str], examples: int, max_new_tokens: int) -> None:
    import tempfile
    from pathlib import Path

    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from cpo_pipeline.evaluation.inference import generate
    from cpo_pipeline.preference.prompt import DEFAULT_REQUEST
    from cpo_pipeline.training.tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory() as folder:
        model_dir = build_tiny_model([DEFAULT_REQUEST, *references[:2000]],
                                     out_dir=Path(folder) / "model")
        model = AutoModelForImageTextToText.from_pretrained(model_dir)
        processor = AutoProcessor.from_pretrained(model_dir)
        rows = []
        for i in range(examples):
            path = Path(folder) / f"{i}.png"
            pixels = np.random.default_rng(i).integers(0, 256, size=(64, 56), dtype=np.uint8)
            Image.fromarray(pixels, mode="L").save(path)
            rows.append({"messages": [{"role": "user", "content": DEFAULT_REQUEST},
                                      {"role": "assistant", "content": ""}],
                         "images": [str(path)]})
        figures = {}
        for name, batch in (("one at a time", 1), ("batched (8)", 8)):
            started = time.perf_counter()
            texts = generate(model, processor, rows, max_new_tokens=max_new_tokens,
                             batch_size=batch)
            seconds = time.perf_counter() - started
            tokens = sum(len(processor.tokenizer(t, add_special_tokens=False)["input_ids"])
                         for t in texts)
            figures[name] = tokens / seconds
            print(f"generation, {name:<14} {tokens:>7,} tokens in {seconds:6.1f} s: "
                  f"{tokens / seconds:8.0f} tokens/s")
        print(f"batched / one at a time: {figures['batched (8)'] / figures['one at a time']:.2f}x")
        _probes(model, processor, rows, references)


def _full_sequences(model, processor, example: dict, prefix: str, continuations) -> list[float]:
    """The baseline: every continuation's whole text (image, prompt, prefix, continuation) in
    one right-padded batch, as `continuation_logprobs` did before it shared the prefix."""
    import torch

    from cpo_pipeline.evaluation.inference import _image, prompt_text

    head = prompt_text(processor, example) + prefix
    image = _image(example)
    head_length = processor(text=[head], images=[image], return_tensors="pt")["input_ids"].shape[1]
    tokenizer = processor.tokenizer
    side, tokenizer.padding_side = tokenizer.padding_side, "right"
    try:
        inputs = processor(text=[head + c for c in continuations],
                           images=[image] * len(continuations), padding=True, return_tensors="pt")
    finally:
        tokenizer.padding_side = side
    with torch.no_grad():
        logits = model(**inputs).logits.float()
    logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
    targets = inputs["input_ids"][:, 1:]
    token_logprobs = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    scored = ((torch.arange(targets.shape[1]) >= head_length - 1)
              & inputs["attention_mask"][:, 1:].bool())
    return [float(value) for value in (token_logprobs * scored).sum(dim=1)]


def _probes(model, processor, rows: list[dict], references: list[str]) -> None:
    from cpo_pipeline.evaluation.classification import ANSWER_LABELS
    from cpo_pipeline.evaluation.inference import answer_line_probe, answer_line_scores

    thinking = references[:len(rows)]
    started = time.perf_counter()
    baseline = [_full_sequences(model, processor, row,
                                *answer_line_probe(text, ANSWER_LABELS))
                for row, text in zip(rows, thinking)]
    baseline_s = time.perf_counter() - started
    started = time.perf_counter()
    shared = [list(answer_line_scores(model, processor, row, text, ANSWER_LABELS).values())
              for row, text in zip(rows, thinking)]
    shared_s = time.perf_counter() - started
    gap = float(np.max(np.abs(np.array(baseline) - np.array(shared))))
    lines = len(ANSWER_LABELS)
    print(f"\nanswer-line probes, {len(rows)} studies x {lines} lines after the thinking")
    print(f"  baseline: {lines} full sequences per study  "
          f"{baseline_s / len(rows) * 1000:7.1f} ms/study")
    print(f"  shared prefix cache                    {shared_s / len(rows) * 1000:7.1f} ms/study")
    print(f"  speed-up {baseline_s / shared_s:.2f}x; largest score difference {gap:.2e} nats")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-meteor", action="store_true", help="Skip METEOR (Java start-up).")
    parser.add_argument("--generate", type=int, default=64,
                        help="Examples the tiny model answers for the generation figure (0: none).")
    args = parser.parse_args()

    from cpo_pipeline.concepts.mentions import ConceptExtractor
    from cpo_pipeline.concepts.ontology import load_ontology
    from cpo_pipeline.evaluation.classification import (
        ANSWER_METRICS,
        accuracy_table,
        answer_metrics,
        parse_answers,
        reference_answers,
    )
    from cpo_pipeline.evaluation.clinical import efficacy_table, present_labels
    from cpo_pipeline.evaluation.drift import attribute_divergence, swapped_variants, synonym_pairs
    from cpo_pipeline.evaluation.nlg import nlg_scores

    started = time.perf_counter()
    references, generated, labels, subjects = _corpus(args.reports, args.seed)
    print(f"{args.reports:,} reference and generated reports, {len(set(subjects)):,} patients, "
          f"written in {time.perf_counter() - started:.1f} s")
    meteor = not args.no_meteor

    started = time.perf_counter()
    present_labels(references), present_labels(generated)
    bare_nlg = nlg_scores(generated, references, meteor=meteor)
    baseline = time.perf_counter() - started

    started = time.perf_counter()
    ontology = load_ontology()
    extractor = ConceptExtractor(ontology)
    answers = parse_answers(generated)
    accuracy = accuracy_table(answers, reference_answers(labels), subjects)
    primary = answer_metrics(answers, reference_answers(labels), subjects)
    thinking = answers["findings"].fillna("").tolist()
    efficacy = efficacy_table(thinking, references, subjects)
    scores = nlg_scores(thinking, references, meteor=meteor)
    divergence = attribute_divergence(thinking, references, extractor, ontology)
    pairs = synonym_pairs(ontology)
    swaps = sum(len(swapped_variants(text, pairs)) for text in thinking)
    pipeline = time.perf_counter() - started

    print(f"\n{'':<58}{'wall s':>8}")
    print(f"{'baseline: labeller on both texts + COCO scorers, once':<58}{baseline:>8.1f}")
    print(f"{'pipeline: every metric with 1,000-resample intervals':<58}{pipeline:>8.1f}")
    print(f"ratio pipeline / baseline: {pipeline / baseline:.2f}x")
    average = accuracy.set_index("label").loc["average (five)"]
    micro = efficacy.set_index("label").loc["micro (14)"]
    print(f"\naverage accuracy (five) {average['accuracy']:.3f} "
          f"[{average['ci_low']:.3f}, {average['ci_high']:.3f}], unparsed {average['unparsed']}; "
          f"micro F1 (14) {micro['f1']:.3f} [{micro['f1_ci_low']:.3f}, {micro['f1_ci_high']:.3f}]")
    print("answer lines: " + ", ".join(
        f"{row.label} {row.value:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}]"
        for row in primary.head(len(ANSWER_METRICS)).itertuples()))
    print("NLG: " + ", ".join(f"{name} {value:.3f}" for name, value in scores.scores.items())
          + (f" ({'; '.join(scores.notes)})" if scores.notes else ""))
    print(f"attribute-mention JSD {divergence:.4f}; {swaps:,} synonym-swap variants; "
          f"baseline NLG BLEU-4 {bare_nlg.scores['BLEU-4']:.3f}")
    if args.generate:
        print()
        _generation(references, args.generate, max_new_tokens=96)


if __name__ == "__main__":
    main()

"""The training entry point, shaped like TRL's example scripts: parse the config, build model and
processor, build the dataset, hand them to the trainer.

    python -m cpo_pipeline.training.train run_config.json
    python -m cpo_pipeline.training.train --stage sft --dataset_dir … --output_dir …
    accelerate launch --config_file configs/accelerate/multi_gpu_ddp.yaml \
        -m cpo_pipeline.training.train run_config.json

Stage `sft` runs TRL's SFTTrainer on the answer tokens; stage `dpo` runs DPOTrainer with the
starting model as the reference (with LoRA, the adapter is switched off to get it), or the
model `ref_model_name_or_path` names (loaded beside it, frozen). A run that
was killed resumes from its last complete checkpoint; the finished model is written beside the
run and renamed into `model/` only when complete (`cpo_pipeline.training.run_dirs`). Launched by
Dagster Pipes, the main process reports the materialization (metrics, checkpoint directory,
content-hash data version); a config that cannot run exits with status 2 and its reason in
`failure.json` before any weight is loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from cpo_pipeline.preference.prompt import multimodal_prompt
from cpo_pipeline.training import preflight, run_dirs
from cpo_pipeline.training.config import MLFLOW, SFT, TINY, TINY_MODEL, TrainingConfig
from cpo_pipeline.training.preflight import TrainingConfigError
from cpo_pipeline.training.report import model_card

CONFIG_ERROR_EXIT = 2
_STAGING_PREFIX = ".model.tmp-"


def parse_config(argv: Sequence[str]) -> TrainingConfig:
    """A JSON file (what the assets write) or command-line flags, one per config field."""
    if len(argv) == 1 and argv[0].endswith(".json"):
        return TrainingConfig.from_json(Path(argv[0]).read_text())
    from transformers import HfArgumentParser

    (config,) = HfArgumentParser(TrainingConfig).parse_args_into_dataclasses(args=list(argv))
    return config


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def prompt_inputs(processor, example: dict):
    """The processed generation prompt of one example: its user turn(s) and its image."""
    return processor.apply_chat_template(multimodal_prompt(example, example["images"][0]),
                                         add_generation_prompt=True, tokenize=True,
                                         return_dict=True, return_tensors="pt")


def training_texts(dataset) -> list[str]:
    """Every message of an SFT set: what the tiny model's tokenizer is trained on."""
    return [message["content"] for row in dataset["messages"] for message in row]


def _starting_model(config: TrainingConfig, train, run: Path, state) -> str:
    """The model directory or hub id training starts from; the tiny model is built here."""
    if config.model_name_or_path != TINY_MODEL:
        return config.model_name_or_path
    from cpo_pipeline.training.modeling import build_tiny, labelled_images

    directory = run / "base_model"
    with state.main_process_first():
        if state.is_main_process and not (directory / "config.json").is_file():
            build_tiny(training_texts(train), directory, config.seed,
                       # A corpus tower needs no cohort images (decoding them all is slow).
                       vision_examples=None if config.tiny_vision_corpus_images
                       else labelled_images(train),
                       vision_epochs=config.tiny_vision_pretraining_epochs,
                       size=config.tiny_model_size,
                       corpus_images=config.tiny_vision_corpus_images,
                       tower_cache=config.tiny_vision_cache_dir)
    return str(directory)


def _base_model(config: TrainingConfig, start: str) -> str:
    """The original base: a starting model trained by this pipeline records its own."""
    summary = Path(start) / run_dirs.SUMMARY
    if summary.is_file():
        return json.loads(summary.read_text())["base_model"]
    return config.model_name_or_path


def _trainer_arguments(config: TrainingConfig, use_cpu: bool):
    common: dict[str, Any] = {
        "output_dir": str(run_dirs.trainer_dir(Path(config.output_dir))),
        "learning_rate": config.learning_rate,
        "num_train_epochs": config.num_train_epochs,
        "max_steps": config.max_steps,
        "warmup_steps": config.warmup_ratio,  # a float below 1 is a share of the steps
        "lr_scheduler_type": config.lr_scheduler_type,
        "adam_beta1": config.adam_beta1,
        "adam_beta2": config.adam_beta2,
        "weight_decay": config.weight_decay,
        "per_device_train_batch_size": config.per_device_train_batch_size,
        "per_device_eval_batch_size": config.per_device_train_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "max_length": config.max_length,
        "bf16": config.bf16,
        "gradient_checkpointing": config.gradient_checkpointing,
        "use_cpu": use_cpu,
        "seed": config.seed,
        "logging_steps": config.logging_steps,
        "save_strategy": "steps",
        "save_steps": config.save_steps,
        "save_total_limit": config.save_total_limit,
        "report_to": [MLFLOW] if config.report_to == MLFLOW else [],
        "run_name": config.run_name,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }
    if config.stage == SFT:
        from trl import SFTConfig

        return SFTConfig(**common, assistant_only_loss=True)
    from trl import DPOConfig

    loss_type, loss_weights = config.trl_losses()
    return DPOConfig(**common, beta=config.beta, loss_type=loss_type, loss_weights=loss_weights)


def _build_trainer(config: TrainingConfig, model, processor, train, callbacks: list,
                   ref_model=None):
    from cpo_pipeline.training.modeling import find_vision_tower, freeze, lora_config

    tower = find_vision_tower(model)
    peft_config = lora_config(config, tower) if config.use_lora else None
    if config.freeze_vision_tower and tower is not None and peft_config is None:
        freeze(model, tower)
    args = _trainer_arguments(config, use_cpu=bool(config.use_cpu))
    if config.stage == SFT:
        from trl import SFTTrainer

        return SFTTrainer(model=model, args=args, train_dataset=train, processing_class=processor,
                          peft_config=peft_config, callbacks=callbacks)
    from trl import DPOTrainer

    if ref_model is not None:
        ref_model.requires_grad_(False)
    return DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=train,
                      processing_class=processor, peft_config=peft_config, callbacks=callbacks)


def _log_parameters_now(trainer) -> None:
    """Let `report_to` log the run's parameters before training rather than at its first step:
    hundreds of parameter writes are not training time, and would count as such."""
    from transformers.integrations import MLflowCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, MLflowCallback):
            callback.setup(trainer.args, trainer.state, trainer.model)


def _resume_point(trainer_dir: Path, is_main: bool) -> Path | None:
    """The last complete checkpoint; half-written ones (a kill mid-save) are removed."""
    complete = run_dirs.complete_checkpoints(trainer_dir)
    if is_main and trainer_dir.is_dir():
        for path in trainer_dir.glob("checkpoint-*"):
            if path not in complete:
                shutil.rmtree(path, ignore_errors=True)
    return complete[-1] if complete else None


def _final_metrics(trainer, config: TrainingConfig, datasets) -> dict[str, float]:
    """Loss (DPO: reward accuracy and margin) of the trained model on up to `eval_samples`
    training examples and as many held-out ones, named `final_train_*` / `final_eval_*`."""
    from transformers.integrations import MLflowCallback

    # Logged to MLflow under their final_* names by the caller, not as a second eval_* series.
    trainer.remove_callback(MLflowCallback)
    final: dict[str, float] = {}
    for prefix, dataset in (("final_train", datasets.train), ("final_eval", datasets.eval)):
        if dataset is None or config.eval_samples <= 0:
            continue
        subset = dataset.select(range(min(config.eval_samples, len(dataset))))
        measured = trainer.evaluate(eval_dataset=subset)
        final.update({prefix + key.removeprefix("eval"): float(value)
                      for key, value in measured.items() if key.startswith("eval_")})
    return final


def _sample_answer(model, processor, example: dict, config: TrainingConfig) -> dict | None:
    """Greedy answer for one training image, and whether it has the trajectory format."""
    import torch

    from cpo_pipeline.radiology.answer_format import TrajectoryFormatError, parse_trajectory

    if config.sample_max_new_tokens <= 0:
        return None
    inputs = prompt_inputs(processor, example).to(model.device)
    model.eval()
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=config.sample_max_new_tokens,
                                do_sample=False)
    answer = processor.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    try:
        parse_trajectory(answer)
        follows = True
    except TrajectoryFormatError:
        follows = False
    return {"answer": answer.strip(), "follows_trajectory_format": follows}


def _count_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def _save_model(trainer, processor, staging: Path) -> Any:
    """The adapter alone under `adapter/`, then the merged model and the processor."""
    from peft import PeftModel

    model = trainer.model
    if isinstance(model, PeftModel):
        model.save_pretrained(str(staging / run_dirs.ADAPTER_DIRNAME))
        model = model.merge_and_unload()
    model.save_pretrained(str(staging))
    processor.save_pretrained(str(staging))
    return model


def run_training(config: TrainingConfig, pipes=None) -> dict | None:
    """Train one stage; returns the summary on the main process (None on the others)."""
    preflight.check_fields(config)
    config = config.resolved()
    datasets = preflight.load_datasets(config)

    import torch
    from accelerate import PartialState

    run = Path(config.output_dir)
    run.mkdir(parents=True, exist_ok=True)
    use_cpu = config.use_cpu if config.use_cpu is not None else not torch.cuda.is_available()
    config = replace(config, use_cpu=use_cpu)
    threads = config.cpu_threads or (1 if config.recipe == TINY else None)
    if use_cpu and threads:
        torch.set_num_threads(threads)
    state = PartialState(cpu=use_cpu)
    start = _starting_model(config, datasets.train, run, state)
    checked = replace(config, model_name_or_path=start)
    model_config = preflight.check_model_source(checked)

    from cpo_pipeline.training.modeling import load_model, load_processor

    processor = load_processor(start, checked)
    example = datasets.train[0]
    preflight.check_model_fits(
        checked, model_config, processor,
        lambda: int(prompt_inputs(processor, example)["input_ids"].shape[1]))

    model = load_model(start, checked)
    ref_model = None
    if config.ref_model_name_or_path is not None:
        reference = replace(checked, model_name_or_path=config.ref_model_name_or_path)
        preflight.check_model_source(reference)
        ref_model = load_model(config.ref_model_name_or_path, reference)
    tracked = None
    if config.report_to == MLFLOW and state.is_main_process:
        from cpo_pipeline.training import tracking

        tracked = tracking.start_run(config, run)
    callbacks = []
    if pipes is not None:
        from cpo_pipeline.training.pipes import step_log_callback

        callbacks.append(step_log_callback(pipes))
    trainer = _build_trainer(config, model, processor, datasets.train, callbacks, ref_model)
    trainable, total = _count_parameters(trainer.model)
    _log_parameters_now(trainer)
    resume = _resume_point(run_dirs.trainer_dir(run), state.is_main_process)
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    final = _final_metrics(trainer, config, datasets)

    summary = None
    if state.is_main_process:
        summary = _finish(config, run, trainer, processor, example, start, datasets, result,
                          final, resume, (trainable, total), tracked)
    state.wait_for_everyone()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return summary


def _finish(config, run, trainer, processor, example, start, datasets, result, final, resume,
            parameters, tracked) -> dict:
    """Save the model into a staging directory, describe it, and rename it into place."""
    staging = run / f"{_STAGING_PREFIX}{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    merged = _save_model(trainer, processor, staging)
    sample = _sample_answer(merged, processor, example, config)
    final_dir = run_dirs.model_dir(run)
    metrics = {**{k: float(v) for k, v in result.metrics.items() if isinstance(v, int | float)},
               **final}
    summary = {
        "stage": config.stage,
        "model_dir": str(final_dir),
        "data_version": run_dirs.model_version(staging),
        "base_model": _base_model(config, start),
        "starting_model": config.model_name_or_path if config.model_name_or_path != TINY_MODEL
        else TINY_MODEL,
        "reference_model": config.ref_model_name_or_path,
        "dataset_name": config.dataset_name,
        "dataset_dir": config.dataset_dir,
        "dataset_rows": len(datasets.train),
        "dataset_fingerprint": run_dirs.directory_fingerprint(Path(config.dataset_dir)),
        "recipe": _recipe(config),
        "global_step": trainer.state.global_step,
        "world_size": trainer.args.world_size,
        "train_runtime_s": round(float(result.metrics.get("train_runtime", 0.0)), 3),
        "train_samples_per_second": float(result.metrics.get("train_samples_per_second", 0.0)),
        "resumed_from_step": int(resume.name.split("-")[-1]) if resume else None,
        "metrics": metrics,
        "trainable_parameters": parameters[0],
        "total_parameters": parameters[1],
        "mlflow": None,
        "sample": sample,
    }
    if tracked is not None:
        from cpo_pipeline.training import tracking

        summary["mlflow"] = {"tracking_uri": tracked.tracking_uri,
                             "experiment_id": tracked.experiment_id, "run_id": tracked.run_id,
                             "link": tracking.run_link(tracked)}
    (staging / run_dirs.SUMMARY).write_text(json.dumps(summary, indent=2))
    (staging / run_dirs.LOG_HISTORY).write_text(
        "".join(json.dumps(row) + "\n" for row in trainer.state.log_history))
    (staging / run_dirs.CARD).write_text(model_card(summary, config.run_name or config.stage))
    run_dirs.install_directory(staging, final_dir)
    # The finished model is in place: the resumable checkpoints have served.
    shutil.rmtree(run_dirs.trainer_dir(run), ignore_errors=True)
    if tracked is not None:
        from cpo_pipeline.training import tracking

        tracking.finish_run({"checkpoint_dir": str(final_dir),
                             "data_version": summary["data_version"]}, metrics)
    return summary


def _recipe(config: TrainingConfig) -> dict[str, Any]:
    from cpo_pipeline.training.config import recipe_parameters

    return recipe_parameters(config)


def _write_failure(config: TrainingConfig, error: Exception) -> None:
    if config.output_dir and Path(config.output_dir).is_dir():
        (Path(config.output_dir) / run_dirs.FAILURE).write_text(json.dumps(
            {"error": type(error).__name__, "message": str(error)}, indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(sys.argv[1:] if argv is None else argv)
    from cpo_pipeline.training.pipes import pipes_session, report_materialization

    with pipes_session(_is_main_process()) as pipes:
        try:
            summary = run_training(config, pipes)
        except TrainingConfigError as error:
            _write_failure(config, error)
            print(f"error: {error}", file=sys.stderr)
            if pipes is not None:
                pipes.log.error(str(error))
            return CONFIG_ERROR_EXIT
        if pipes is not None and summary is not None:
            report_materialization(pipes, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())

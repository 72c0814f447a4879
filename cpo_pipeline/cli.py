"""The `cpo-pipeline` command."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from cpo_pipeline.demo.generator import DemoConfig, write_demo_tree


def _demo_data(args: argparse.Namespace) -> int:
    out: Path = args.out
    if out.exists() and any(out.iterdir()):
        print(f"error: {out} exists and is not empty; choose a new folder", file=sys.stderr)
        return 2
    config = DemoConfig(
        patients=args.patients,
        seed=args.seed,
        release=args.release,
        realistic_size=args.realistic_size,
        drift=args.drift,
    )
    started = time.perf_counter()
    summary = write_demo_tree(out, config)
    print(
        f"wrote a synthetic MIMIC-CXR ({args.release}) tree to {summary.root}: "
        f"{summary.patients} patients, {summary.studies} studies, {summary.images} images "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return 0


def _scripted_llm(args: argparse.Namespace) -> int:
    from cpo_pipeline.testing.openai_server import DEFAULT_MODEL, OpenAICompatibleServer
    from cpo_pipeline.testing.scripted_expert import answer_counterfactual_prompt

    server = OpenAICompatibleServer(
        responder=answer_counterfactual_prompt, delay_s=args.delay, port=args.port)
    # Ctrl-C is how this server stops, so it must not inherit an ignored SIGINT: a shell
    # without job control starts background commands (`... &`, CI scripts) with SIGINT ignored,
    # and Python then leaves it ignored; the server would outlive every interrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with server:
        # The interrupt may come as soon as the address is out, before print has returned.
        try:
            print(f"scripted counterfactual expert listening; in another shell:\n"
                  f"  export CPO_LLM_BASE_URL={server.base_url} CPO_LLM_MODEL={DEFAULT_MODEL}",
                  flush=True)
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cpo-pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo-data", help="write a synthetic MIMIC-CXR tree in the real 2.x layout"
    )
    demo.add_argument("--out", type=Path, required=True, help="folder to create")
    demo.add_argument("--patients", type=int, default=DemoConfig.patients)
    demo.add_argument("--seed", type=int, default=DemoConfig.seed)
    demo.add_argument(
        "--release", choices=("dicom", "jpg"), default="dicom",
        help="dicom: .dcm files + .txt reports; jpg: the MIMIC-CXR-JPG layout (.jpg, reports zip)",
    )
    demo.add_argument(
        "--realistic-size", action="store_true",
        help="2500-3100 px images like the real release (slow; for benchmarks)",
    )
    demo.add_argument(
        "--drift", type=float, default=DemoConfig.drift,
        help="non-stationarity: later visits sicker (fewer normal studies, more edema and "
        "effusion) by this much; 0 draws every visit alike",
    )
    demo.set_defaults(handler=_demo_data)
    scripted = commands.add_parser(
        "scripted-llm",
        help="serve a scripted counterfactual expert over the OpenAI protocol on 127.0.0.1, to "
        "try the LLM path without a model (Ctrl-C stops it)",
    )
    scripted.add_argument("--port", type=int, default=8011)
    scripted.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    scripted.set_defaults(handler=_scripted_llm)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    raise SystemExit(main())

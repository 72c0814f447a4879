"""LLM client throughput: `run_chat_requests` against a local OpenAI-compatible server.

The server (`cpo_pipeline.testing.openai_server`) answers every request after a fixed delay
(default 200 ms) and runs in its own process, so the CPU time measured here is the client's alone
(the openai SDK, httpx2's stock transport, limits, retries bookkeeping and the SQLite response
cache). Prompts are the size of a real counterfactual prompt (about 2 KB).

- Throughput at each concurrency: `rounds` x concurrency requests; the sustained rate is measured
  between the first and the last `concurrency` completions (ramp-up and drain excluded), the batch
  rate over the whole call, connection set-up included. The ideal is concurrency / delay. Target,
  at concurrency 128 against the 200 ms server: sustained >= 300 requests/s (more than ten vLLM
  replicas answer) with <= 3 ms of client CPU per request, and no failures.
- A fully cached re-run over 10,000 items (the cache filled through its API with the keys the
  client computes): requests sent must be 0, wall time under 20 s (target about 1 s of lookups).

Wall-clock rates need an otherwise idle machine (the load average is printed); the client's CPU ms
per request is the figure to compare when the machine is shared.

    python benchmarks/bench_llm_client.py [--delay 0.2] [--concurrency 32 128] [--rounds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from cpo_pipeline.llm.client import (
    ChatRequest,
    EndpointConfig,
    RequestCounters,
    complete_many,
    response_key,
    run_chat_requests,
)
from cpo_pipeline.llm.response_cache import CachedResponse, ResponseCache
from cpo_pipeline.testing.openai_server import OpenAICompatibleServer

TARGET_CONCURRENCY = 128
TARGET_DELAY_S = 0.2
TARGET_SUSTAINED_PER_S = 300.0
TARGET_CPU_MS_PER_REQUEST = 3.0
CACHED_RERUN_TARGET_S = 20.0
MODEL = "bench-model"
_FINDINGS = (
    "PA and lateral views of the chest. The lungs are clear without focal consolidation, "
    "pleural effusion or pneumothorax. The cardiomediastinal silhouette is within normal limits. "
)
_SYSTEM = "Rewrite the findings with minimal edits so that they support the target disease. " * 4


def serve(connection: Connection, delay_s: float) -> None:
    """The server process: reports its port, then answers 'count' until told 'stop'."""
    with OpenAICompatibleServer(delay_s=delay_s, responder=lambda _: _FINDINGS) as server:
        connection.send(server.port)
        while connection.recv() != "stop":
            connection.send(len(server.chat_requests))


def study_requests(prefix: str, count: int) -> list[ChatRequest]:
    """`count` prompts of about 2 KB: instructions, findings, the target disease."""
    return [
        ChatRequest(
            f"{prefix}/{index}",
            [
                {"role": "system", "content": _SYSTEM},
                {"role": "user", "content": f"Study {index}. {_FINDINGS * 4} Target: Pneumonia."},
            ],
        )
        for index in range(count)
    ]


@dataclass(frozen=True)
class Throughput:
    sustained_per_s: float
    batch_per_s: float
    cpu_ms_per_request: float
    failures: int


def measure_throughput(config: EndpointConfig, cache: ResponseCache, rounds: int) -> Throughput:
    concurrency = config.concurrency
    # Warm-up: imports, the SDK's one-off platform probe, SQLite's first writes.
    complete_many(config, study_requests(f"warm-{concurrency}", concurrency), cache=cache)
    requests = study_requests(f"timed-{concurrency}", rounds * concurrency)
    finished: list[float] = []

    def record(done: int, total: int, counters: RequestCounters) -> None:
        finished.append(time.perf_counter())

    cpu_before, started = time.process_time(), time.perf_counter()
    results = asyncio.run(
        run_chat_requests(config, requests, cache=cache, on_progress=record, progress_interval_s=0)
    )
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_before
    window = finished[-concurrency - 1] - finished[concurrency - 1]
    return Throughput(
        sustained_per_s=(len(requests) - 2 * concurrency) / window,
        batch_per_s=len(requests) / wall,
        cpu_ms_per_request=cpu / len(requests) * 1000,
        failures=sum(not result.ok for result in results),
    )


def target_verdict(figure: Throughput | None, delay_s: float) -> str:
    """The target line: what it asks, what was measured at its concurrency, whether it is met."""
    target = (
        f"target at concurrency {TARGET_CONCURRENCY}, {TARGET_DELAY_S * 1000:.0f} ms server "
        f"(ideal {TARGET_CONCURRENCY / TARGET_DELAY_S:.0f}/s): sustained >= "
        f"{TARGET_SUSTAINED_PER_S:.0f}/s, client CPU <= {TARGET_CPU_MS_PER_REQUEST:.1f} ms/req, "
        "0 failed"
    )
    if figure is None or delay_s != TARGET_DELAY_S:
        return (
            f"{target}: not measured (run with --delay {TARGET_DELAY_S} and "
            f"{TARGET_CONCURRENCY} among --concurrency)"
        )
    met = (
        figure.sustained_per_s >= TARGET_SUSTAINED_PER_S
        and figure.cpu_ms_per_request <= TARGET_CPU_MS_PER_REQUEST
        and figure.failures == 0
    )
    return (
        f"{target}; measured {figure.sustained_per_s:.0f}/s, "
        f"{figure.cpu_ms_per_request:.2f} ms/req, {figure.failures} failed: "
        f"{'yes' if met else 'NO'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.2, help="server delay per request, s")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--rounds", type=int, default=8, help="requests per concurrency slot")
    parser.add_argument("--cached-items", type=int, default=10_000)
    args = parser.parse_args()
    if args.rounds < 3:
        parser.error("--rounds must be at least 3: one to ramp up, one to drain, one to measure")

    to_server, server_end = multiprocessing.Pipe()
    server = multiprocessing.Process(target=serve, args=(server_end, args.delay), daemon=True)
    server.start()
    base_url = f"http://127.0.0.1:{to_server.recv()}/v1"

    def requests_received() -> int:
        to_server.send("count")
        return to_server.recv()

    try:
        with tempfile.TemporaryDirectory(prefix="bench-llm-") as tmp:
            cache = ResponseCache(Path(tmp) / "responses.sqlite")
            load_before = os.getloadavg()[0]
            figures = {
                concurrency: measure_throughput(
                    EndpointConfig(base_url, MODEL, concurrency=concurrency, timeout_s=30.0),
                    cache,
                    args.rounds,
                )
                for concurrency in args.concurrency
            }

            config = EndpointConfig(base_url, MODEL, concurrency=max(args.concurrency))
            rerun = study_requests("cached", args.cached_items)
            for request in rerun:
                cache.put(
                    response_key(config, request), CachedResponse(_FINDINGS, MODEL, 400, 30, 0.2)
                )
            lookup_started = time.perf_counter()
            cache.get_many(response_key(config, request) for request in rerun)
            lookup_s = time.perf_counter() - lookup_started
            received_before, counters = requests_received(), RequestCounters()
            rerun_started = time.perf_counter()
            results = complete_many(config, rerun, cache=cache, counters=counters)
            rerun_s = time.perf_counter() - rerun_started
            sent = requests_received() - received_before
            cache.close()
    finally:
        to_server.send("stop")
        server.join(timeout=10)

    print(
        f"server delay {args.delay * 1000:.0f} ms, in its own process; {args.rounds} rounds per "
        f"concurrency slot; {os.cpu_count()} CPUs, load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after"
    )
    print(
        f"{'concurrency':>11} {'ideal/s':>8} {'sustained/s':>12} {'of ideal':>9} {'batch/s':>8} "
        f"{'client CPU ms/req':>18} {'failed':>7}"
    )
    for concurrency, figure in figures.items():
        ideal = concurrency / args.delay
        print(
            f"{concurrency:>11} {ideal:>8.0f} {figure.sustained_per_s:>12.0f} "
            f"{figure.sustained_per_s / ideal:>9.2f} {figure.batch_per_s:>8.0f} "
            f"{figure.cpu_ms_per_request:>18.2f} {figure.failures:>7}"
        )
    print(target_verdict(figures.get(TARGET_CONCURRENCY), args.delay))
    cached = sum(result.cached for result in results)
    met = sent == 0 and rerun_s < CACHED_RERUN_TARGET_S
    print(
        f"fully cached re-run of {args.cached_items} items: {cached} served from the cache, "
        f"{sent} requests reached the server ({counters.requests_sent} sent), target 0; "
        f"{rerun_s:.2f} s end to end (cache lookups alone {lookup_s:.2f} s), target < "
        f"{CACHED_RERUN_TARGET_S:.0f} s: {'yes' if met else 'NO'}"
    )


if __name__ == "__main__":
    main()

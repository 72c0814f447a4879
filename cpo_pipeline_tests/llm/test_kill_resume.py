"""A generation process killed with SIGKILL mid-run loses nothing it was answered: the rerun
asks the endpoint only for what had no committed answer."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter

from cpo_pipeline.llm.client import ChatRequest, EndpointConfig, complete_many
from cpo_pipeline.llm.response_cache import ResponseCache
from cpo_pipeline.testing.openai_server import OpenAICompatibleServer

PROMPTS = [f"Findings {index}: small left pleural effusion." for index in range(40)]

# The victim: the same requests, in a separate process we can kill without warning.
VICTIM = """
import sys
from cpo_pipeline.llm.client import ChatRequest, EndpointConfig, complete_many
from cpo_pipeline.llm.response_cache import ResponseCache
base_url, cache_path = sys.argv[1], sys.argv[2]
prompts = [f"Findings {index}: small left pleural effusion." for index in range(40)]
requests = [ChatRequest(p, [{"role": "user", "content": p}]) for p in prompts]
config = EndpointConfig(base_url, "cpo-test-model", concurrency=4)
with ResponseCache(cache_path) as cache:
    complete_many(config, requests, cache=cache)
"""


def test_sigkill_midway_then_rerun_sends_only_unanswered_requests(tmp_path):
    cache_path = tmp_path / "responses.sqlite"
    with OpenAICompatibleServer(delay_s=0.05) as server:
        victim = subprocess.Popen([sys.executable, "-c", VICTIM, server.base_url, str(cache_path)],
                                  env={**os.environ, "HF_HUB_OFFLINE": "1"})
        deadline = time.monotonic() + 30
        while len(server.chat_requests) < 16 and time.monotonic() < deadline:
            time.sleep(0.01)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        sent_before_kill = Counter(r.prompt for r in server.chat_requests)

        with ResponseCache(cache_path) as cache:
            answered = len(cache)
            requests = [ChatRequest(p, [{"role": "user", "content": p}]) for p in PROMPTS]
            results = complete_many(EndpointConfig(server.base_url, "cpo-test-model"), requests,
                                    cache=cache)
        sent_after = Counter(r.prompt for r in server.chat_requests) - sent_before_kill

    assert victim.returncode == -signal.SIGKILL
    assert 0 < answered < len(PROMPTS)
    assert sum(sent_after.values()) == len(PROMPTS) - answered
    assert all(count == 1 for count in sent_after.values())
    assert all(result.ok for result in results)

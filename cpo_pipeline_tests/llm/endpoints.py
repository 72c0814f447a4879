"""The test server as the client's tests configure it (fast retries, a key to look for), and the
requests and fault plans they send it."""

from cpo_pipeline.llm.client import ChatRequest, EndpointConfig
from cpo_pipeline.settings import Secret
from cpo_pipeline.testing.openai_server import Fault, OpenAICompatibleServer

API_KEY = "sk-test-4f9c1b7e-never-leak"
FINDINGS = (
    "<think> Patchy right lower lobe opacity. </think> The disease of this patient is Pneumonia."
)


def endpoint(server: OpenAICompatibleServer, **overrides) -> EndpointConfig:
    fast = {"timeout_s": 2.0, "backoff_base_s": 0.01, "backoff_cap_s": 0.05, "max_attempts": 3}
    return EndpointConfig(
        server.base_url, "cpo-test-model", api_key=Secret(API_KEY), **{**fast, **overrides}
    )


def asking(*prompts: str) -> list[ChatRequest]:
    return [ChatRequest(prompt, [{"role": "user", "content": prompt}]) for prompt in prompts]


def failing_first(fault: Fault):
    """A fault plan: each prompt's first request meets `fault`, its retries are answered."""
    return lambda request: fault if request.repeat == 0 else None

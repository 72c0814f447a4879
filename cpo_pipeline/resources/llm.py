"""The LLM endpoint resource: run-config overrides on top of the environment, read at run time."""

from __future__ import annotations

import os

import dagster as dg
from pydantic import Field

from cpo_pipeline import settings as env
from cpo_pipeline.llm.client import EndpointConfig
from cpo_pipeline.llm.endpoint_policy import (
    ALLOW_REMOTE_ENV,
    ALLOWED_HOSTS_ENV,
    allow_remote_from_env,
    allowed_hosts_from_env,
)


class LLMEndpointResource(dg.ConfigurableResource):
    """An OpenAI-compatible chat-completions endpoint, or none (offline mode).

    `base_url` and `model` default to `CPO_LLM_BASE_URL` and `CPO_LLM_MODEL`; with no base URL at
    all, `endpoint_config()` is None and the pipeline uses its offline expert. The API key is
    deliberately not a field: it is read from `CPO_LLM_API_KEY` only, so it never appears in run
    config, the UI or event logs. Which hosts may receive report text is the union of the fields
    and the environment (`CPO_LLM_ALLOWED_HOSTS`, `CPO_LLM_ALLOW_REMOTE_ENDPOINTS`): either can
    widen the policy, neither can narrow what the other allowed.
    """

    base_url: str | None = Field(default=None, description=f"Default: ${env.LLM_BASE_URL_ENV}.")
    model: str | None = Field(default=None, description=f"Default: ${env.LLM_MODEL_ENV}.")
    temperature: float = Field(default=0.2, description="Sampling temperature of every request.")
    max_tokens: int = Field(default=512, description="Completion tokens at most per request.")
    timeout_s: float = Field(default=60.0, description="Seconds one request may take.")
    concurrency: int = Field(default=32, description="Requests in flight at once.")
    requests_per_minute: int | None = Field(default=None, description="None: no limit.")
    tokens_per_minute: int | None = Field(default=None, description="None: no limit.")
    max_attempts: int = Field(default=5, description="Per request, retries included.")
    allow_remote_endpoints: bool = Field(
        default=False,
        description="Send report text to any host, not only loopback and `allowed_hosts`; only "
        f"if your MIMIC-CXR data use agreement permits it. Also ${ALLOW_REMOTE_ENV}=1.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts besides loopback that may receive report text. "
        f"Also ${ALLOWED_HOSTS_ENV}.",
    )

    def endpoint_config(self) -> EndpointConfig | None:
        """The endpoint to ask, or None when no base URL is configured (offline mode)."""
        settings = env.load_settings()
        base_url = self.base_url or settings.llm_base_url
        if base_url is None:
            return None
        model = self.model or settings.llm_model
        if model is None:
            raise ValueError(
                f"an LLM endpoint is configured but no model: set {env.LLM_MODEL_ENV} or the "
                "LLM resource's `model` (the name the endpoint serves, e.g. from GET /v1/models)"
            )
        return EndpointConfig(
            base_url=base_url,
            model=model,
            api_key=settings.llm_api_key,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            timeout_s=self.timeout_s,
            concurrency=self.concurrency,
            requests_per_minute=self.requests_per_minute,
            tokens_per_minute=self.tokens_per_minute,
            max_attempts=self.max_attempts,
            allow_remote=self.allow_remote_endpoints or allow_remote_from_env(os.environ),
            allowed_hosts=(*self.allowed_hosts, *allowed_hosts_from_env(os.environ)),
        )

"""LLM experts: the OpenAI-protocol client, its response cache and the endpoint policy."""

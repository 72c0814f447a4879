"""The OpenAI-protocol client layer: endpoint config, retries, rate limits, response cache, endpoint policy."""

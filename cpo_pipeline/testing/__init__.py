"""Test doubles that are real programs: an OpenAI-protocol server and a scripted expert (tests, benchmarks, CLI)."""

"""A durable, content-addressed cache of chat completions: SQLite in WAL mode under the data root.

Each response is committed the moment it is stored, so a run killed half-way keeps everything it
was answered and a restart asks the endpoint only for the rest. WAL mode lets several processes
read while one writes; a busy timeout makes concurrent writers wait instead of failing. WAL with
`synchronous=NORMAL` survives the process being killed (not a power cut), which is the failure
that matters for a pipeline run, at a fraction of the cost of an fsync per response.

The cache holds completion text, token counts, latency and model: never request headers, so never
the API key.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from cpo_pipeline import data_layout

CACHE_FILENAME = "responses.sqlite"
_BUSY_TIMEOUT_S = 30.0
# Keys per `IN (...)` lookup: under SQLite's host-parameter limit, even old builds' 999.
_LOOKUP_BATCH = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    latency_s REAL NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) WITHOUT ROWID
"""


def cache_path(data_root: Path) -> Path:
    """`<data_root>/llm_cache/responses.sqlite`."""
    return data_layout.llm_cache(data_root) / CACHE_FILENAME


@dataclass(frozen=True)
class CachedResponse:
    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float


class ResponseCache:
    """Completions by cache key; open one per process (it is not for concurrent use by threads)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit (isolation_level=None): every `put` is its own committed transaction.
        self._db = sqlite3.connect(
            self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            self._set_up()
        except sqlite3.DatabaseError as error:
            self._db.close()
            raise sqlite3.DatabaseError(
                f"{self.path} is not a usable LLM response cache ({error}); "
                "move it aside to start an empty cache"
            ) from error

    def _set_up(self) -> None:
        """WAL mode and the table. Switching to WAL needs a moment alone with the file, and
        SQLite reports a concurrent opener as locked without waiting on the busy timeout, so
        the switch is retried here until that timeout."""
        deadline = time.monotonic() + _BUSY_TIMEOUT_S
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    @classmethod
    def under(cls, data_root: Path) -> ResponseCache:
        """The cache at `<data_root>/llm_cache/responses.sqlite`."""
        return cls(cache_path(data_root))

    def get_many(self, keys: Iterable[str]) -> dict[str, CachedResponse]:
        """The cached responses among `keys`; missing keys are simply absent."""
        unique = list(dict.fromkeys(keys))
        found: dict[str, CachedResponse] = {}
        for start in range(0, len(unique), _LOOKUP_BATCH):
            batch = unique[start : start + _LOOKUP_BATCH]
            rows = self._db.execute(
                "SELECT key, text, model, prompt_tokens, completion_tokens, latency_s "
                f"FROM responses WHERE key IN ({','.join('?' * len(batch))})",
                batch,
            )
            for key, *fields in rows:
                found[key] = CachedResponse(*fields)
        return found

    def put(self, key: str, response: CachedResponse) -> None:
        """Store and commit one response (replacing any earlier one under the same key)."""
        self._db.execute(
            "INSERT OR REPLACE INTO responses "
            "(key, text, model, prompt_tokens, completion_tokens, latency_s) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                key,
                response.text,
                response.model,
                response.prompt_tokens,
                response.completion_tokens,
                response.latency_s,
            ),
        )

    def __len__(self) -> int:
        return self._db.execute("SELECT count(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

"""How fast one batch may ask an endpoint: request- and token-per-minute budgets, and the pause a
server's Retry-After puts on every worker.

A request's tokens are budgeted before it is sent, from its prompt's length and `max_tokens`, and
settled once the server reports what it really used.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

# A rough English average, enough to budget tokens before the server reports the real usage.
_CHARS_PER_TOKEN = 4


def estimated_tokens(messages: Sequence[Mapping[str, Any]], max_tokens: int) -> int:
    """What a request may cost before the server says: prompt characters / 4, plus `max_tokens`."""
    characters = sum(len(str(message.get("content", ""))) for message in messages)
    return characters // _CHARS_PER_TOKEN + max_tokens


class RateLimiter:
    """The per-minute budgets and the Retry-After pause that the workers of one batch share; a
    None per-minute limit means no limit."""

    def __init__(self, requests_per_minute: int | None, tokens_per_minute: int | None) -> None:
        self._requests = _TokenBucket(requests_per_minute) if requests_per_minute else None
        self._tokens = _TokenBucket(tokens_per_minute) if tokens_per_minute else None
        self._paused_until = 0.0  # monotonic; set by Retry-After, honoured by every worker

    async def wait_for_turn(self, estimated_tokens: int) -> None:
        """Wait out any pause, then take one request and `estimated_tokens` from the budgets."""
        while (pause := self._paused_until - time.monotonic()) > 0:
            await asyncio.sleep(pause)
        if self._requests is not None:
            await self._requests.take(1)
        if self._tokens is not None:
            await self._tokens.take(estimated_tokens)

    def pause(self, seconds: float) -> None:
        """Hold every worker back for `seconds` from now: a server's Retry-After is about the
        endpoint, not about the one request it answered."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def settle(self, estimated_tokens: int, used_tokens: int) -> None:
        """Correct the token budget by what a request really cost, once the server has said."""
        if self._tokens is not None:
            self._tokens.credit(estimated_tokens - used_tokens)


class _TokenBucket:
    """At most `per_minute` units a minute, in bursts of at most one second's worth.

    Providers enforce per-minute limits over shorter windows too, so a whole minute's burst at
    the start would only buy 429s. A cost larger than a burst waits for a full bucket, then goes
    into debt, so it is delayed rather than refused.
    """

    def __init__(self, per_minute: int) -> None:
        self._rate = per_minute / 60.0
        self._capacity = max(1.0, self._rate)
        self._level = self._capacity
        self._updated = time.monotonic()
        self._turn = asyncio.Lock()  # first come, first served

    def _refill(self) -> None:
        now = time.monotonic()
        self._level = min(self._capacity, self._level + (now - self._updated) * self._rate)
        self._updated = now

    async def take(self, amount: float) -> None:
        async with self._turn:
            self._refill()
            needed = min(amount, self._capacity)
            while self._level < needed:
                await asyncio.sleep((needed - self._level) / self._rate)
                self._refill()
            self._level -= amount

    def credit(self, amount: float) -> None:
        """Give back (negative: charge extra) the difference once the real cost is known."""
        self._refill()
        self._level = min(self._capacity, self._level + amount)

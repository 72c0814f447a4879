import sqlite3
import subprocess
import sys

import pytest

from cpo_pipeline.llm.response_cache import CachedResponse, ResponseCache, cache_path
from cpo_pipeline.storage import content_hash

ANSWER = CachedResponse(
    text="<think> no focal consolidation </think> The disease of this patient is No Finding.",
    model="qwen2.5-7b-instruct",
    prompt_tokens=812,
    completion_tokens=64,
    latency_s=1.25,
)


def test_the_cache_lives_under_the_data_root(tmp_path):
    assert cache_path(tmp_path) == tmp_path / "llm_cache" / "responses.sqlite"
    with ResponseCache.under(tmp_path) as cache:
        assert cache.path == tmp_path / "llm_cache" / "responses.sqlite"
    assert cache_path(tmp_path).is_file()


def test_get_many_returns_stored_responses_and_leaves_out_missing_keys(tmp_path):
    with ResponseCache(tmp_path / "responses.sqlite") as cache:
        cache.put("k1", ANSWER)

        assert cache.get_many(["k1", "missing", "k1"]) == {"k1": ANSWER}
        assert cache.get_many([]) == {}


def test_storing_a_key_again_replaces_its_response(tmp_path):
    newer = CachedResponse("second answer", "m", 1, 2, 0.5)
    with ResponseCache(tmp_path / "responses.sqlite") as cache:
        cache.put("k1", ANSWER)
        cache.put("k1", newer)

        assert cache.get_many(["k1"]) == {"k1": newer}
        assert len(cache) == 1


def test_a_stored_response_is_committed_at_once_and_visible_to_another_connection(tmp_path):
    path = tmp_path / "responses.sqlite"
    writer = ResponseCache(path)
    writer.put("k1", ANSWER)

    # The writer is still open (a run in progress, or one about to be killed).
    with ResponseCache(path) as reader:
        assert reader.get_many(["k1"]) == {"k1": ANSWER}
    writer.close()


def test_the_database_is_in_wal_mode(tmp_path):
    path = tmp_path / "responses.sqlite"
    ResponseCache(path).close()

    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_several_processes_can_write_at_the_same_time(tmp_path):
    path = tmp_path / "responses.sqlite"
    script = (
        "import sys; from pathlib import Path\n"
        "from cpo_pipeline.llm.response_cache import CachedResponse, ResponseCache\n"
        "cache = ResponseCache(Path(sys.argv[1]))\n"
        "for i in range(200):\n"
        "    cache.put(f'{sys.argv[2]}-{i}', CachedResponse('t', 'm', 1, 1, 0.1))\n"
    )
    writers = [
        subprocess.Popen([sys.executable, "-c", script, str(path), name]) for name in ("a", "b")
    ]

    assert [writer.wait(timeout=60) for writer in writers] == [0, 0]
    with ResponseCache(path) as cache:
        assert len(cache) == 400


def test_ten_thousand_lookups_in_one_call_find_exactly_what_was_stored(tmp_path):
    # Its speed (a cached re-run of 10,000 items in under 20 s) is bench_llm_client.py's to
    # measure; a timed assertion here failed on a loaded machine.
    keys = [content_hash({"study": i}) for i in range(10_000)]
    missing = [content_hash({"study": -i}) for i in range(1, 4)]
    with ResponseCache(tmp_path / "responses.sqlite") as cache:
        for key in keys[::2]:
            cache.put(key, ANSWER)

        found = cache.get_many([*keys, *missing])

    assert set(found) == set(keys[::2])
    assert all(found[key] == ANSWER for key in keys[::2])


def test_a_file_that_is_not_a_cache_is_an_error_naming_it(tmp_path):
    path = tmp_path / "responses.sqlite"
    path.write_bytes(b"this is not a database" * 100)

    with pytest.raises(sqlite3.DatabaseError, match="responses.sqlite is not a usable"):
        ResponseCache(path)

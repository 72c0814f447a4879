"""The web UI as a user drives it: `dagster-webserver` and `dagster-daemon` on a fresh instance,
headless Chromium selects `cxr_studies` on the asset graph and clicks Materialize, and Dagster's
GraphQL API says the run succeeded and the asset was materialized.

Screenshots of the asset graph and of the finished run land in $CPO_TEST_ARTIFACTS (default
`test-artifacts/` in the repository root).
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from cpo_pipeline.demo.generator import DemoConfig
from cpo_pipeline.demo.tree import ensure_demo_tree
from cpo_pipeline.settings import DATA_ROOT_ENV, load_settings

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright for Python is not installed (the `dev` extra)")

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium")
# As root, and on a machine whose only network is loopback, Chromium needs these or its
# connections stall; Playwright adds --headless and a fresh --user-data-dir itself.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
ASSET = "cxr_studies"
TERMINAL_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}
UI_TIMEOUT_MS = 180_000  # the UI builds on two loaded cores while other test files train
RUN_TIMEOUT_S = 90
# The webserver and the daemon each start a code server that imports the definitions (5 s on an
# idle core); on two cores shared with training tests that has taken minutes, past Dagster's
# 180 s default, which leaves the UI with an empty graph and no error on the page.
CODE_SERVER_STARTUP_S = 420

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None,
                       reason="no `chromium` on PATH (Debian: apt-get install chromium)"),
    pytest.mark.timeout(CODE_SERVER_STARTUP_S + 300),
]

RUNS_QUERY = """
query Runs {
  runsOrError {
    ... on Runs {
      results {
        runId
        status
        assetSelection { path }
        assetMaterializations { assetKey { path } }
      }
    }
    ... on PythonError { message }
  }
}
"""

WORKSPACE_QUERY = """
query Workspace {
  workspaceOrError {
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
    ... on PythonError { message }
  }
}
"""

LATEST_MATERIALIZATION_QUERY = """
query LatestMaterialization($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset { assetMaterializations(limit: 1) { runId } }
    ... on AssetNotFoundError { message }
  }
}
"""


@dataclass(frozen=True)
class DagsterUI:
    url: str
    logs: tuple[Path, ...]

    def graphql(self, query: str, **variables) -> dict:
        """POST one query to the webserver's GraphQL endpoint; GraphQL errors fail the test."""
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.load(response)
        assert "errors" not in body, body["errors"]
        return body["data"]

    def log_tail(self, chars: int = 4000) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-chars:]}"
                         for log in self.logs)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    """End the process and everything it started (code servers, run workers): its whole
    session, gently first."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=20)


@contextmanager
def _started(command: list[str], log: Path, **popen) -> Iterator[subprocess.Popen]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, **popen)
    try:
        yield process
    finally:
        _stop(process)


def _wait_until_answering(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"dagster-webserver exited with {process.returncode}:\n"
                        f"{log.read_text(errors='replace')[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"dagster-webserver did not answer at {url} within 90 s:\n"
                f"{log.read_text(errors='replace')[-4000:]}")


def _wait_until_loaded(ui: DagsterUI) -> None:
    """Wait for the code location to finish loading; fail with its load error if it has one."""
    deadline = time.monotonic() + CODE_SERVER_STARTUP_S
    while time.monotonic() < deadline:
        workspace = ui.graphql(WORKSPACE_QUERY)["workspaceOrError"]
        entries = workspace.get("locationEntries")
        assert entries is not None, workspace
        if entries and all(entry["loadStatus"] == "LOADED" for entry in entries):
            errors = [entry for entry in entries
                      if entry["locationOrLoadError"]["__typename"] == "PythonError"]
            assert not errors, f"code location failed to load: {errors}\n{ui.log_tail()}"
            return
        time.sleep(1)
    pytest.fail(f"code location still loading after {CODE_SERVER_STARTUP_S} s: {entries}\n"
                f"{ui.log_tail()}")


@pytest.fixture
def dagster_ui(tmp_path) -> Iterator[DagsterUI]:
    """The webserver and the daemon on a fresh instance (the repository's dagster.yaml) and a
    fresh data root holding a small demo tree.

    The daemon is there because the instance queues runs (its `concurrency: runs` settings):
    a run launched from the UI waits in the queue until the daemon starts it, as under
    `dagster dev`.
    """
    home, data_root = tmp_path / "dagster_home", tmp_path / "data"
    home.mkdir()
    instance_yaml = (REPO_ROOT / "dagster.yaml").read_text()
    (home / "dagster.yaml").write_text(
        f"{instance_yaml}\ncode_servers:\n  local_startup_timeout: {CODE_SERVER_STARTUP_S}\n")
    # The instance's SQLite storage, created and migrated once before the two servers start:
    # both creating it at the same moment can write two alembic heads, and the code location
    # then fails to load ("more than one head present").
    import dagster

    dagster.DagsterInstance.from_config(str(home)).dispose()
    # Written before the servers start, so the run finds a complete tree and skips generating
    # the default (larger) one.
    ensure_demo_tree(load_settings({DATA_ROOT_ENV: str(data_root)}).demo_root,
                     DemoConfig(patients=8))
    env = {**os.environ, "DAGSTER_HOME": str(home), DATA_ROOT_ENV: str(data_root)}
    bin_dir = Path(sys.executable).parent
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    webserver_log, daemon_log = tmp_path / "webserver.log", tmp_path / "daemon.log"
    with ExitStack() as stack:
        webserver = stack.enter_context(_started(
            [str(bin_dir / "dagster-webserver"), "-m", "cpo_pipeline.definitions",
             "-h", "127.0.0.1", "-p", str(port)],
            webserver_log, env=env, cwd=tmp_path))
        stack.enter_context(_started(
            [str(bin_dir / "dagster-daemon"), "run", "-m", "cpo_pipeline.definitions"],
            daemon_log, env=env, cwd=tmp_path))
        _wait_until_answering(url, webserver, webserver_log)
        ui = DagsterUI(url, (webserver_log, daemon_log))
        _wait_until_loaded(ui)
        yield ui


@pytest.fixture
def artifacts() -> Path:
    folder = Path(os.environ.get("CPO_TEST_ARTIFACTS") or REPO_ROOT / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page() -> Iterator["sync_api.Page"]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(UI_TIMEOUT_MS)
            # Assertions have their own timeout (5 s unless told), short for 2 busy cores.
            sync_api.expect.set_options(timeout=UI_TIMEOUT_MS)
            yield page
        finally:
            browser.close()


@contextmanager
def _screenshot_on_failure(page: "sync_api.Page", path: Path) -> Iterator[None]:
    """A failing step leaves a picture of the page it failed on."""
    try:
        yield
    except BaseException:
        page.screenshot(path=path)
        raise


def _launch_from_asset_graph(page: "sync_api.Page", url: str, artifacts: Path) -> str:
    """On the asset graph, filter to ASSET and its upstream, select ASSET, click Materialize;
    returns the short run id the UI reports."""
    # A fresh instance greets its first visitor with a newsletter dialog over the graph.
    page.add_locator_handler(page.get_by_text("Join the Dagster community"),
                             lambda: page.get_by_role("button", name="Skip").click())
    # The graph filtered to ASSET and its upstream, by the address the filter box writes when
    # a user types `+key:ASSET` and presses Enter. Typing it here was flaky on two busy cores:
    # the box redraws while the page still loads and drops the query or the Enter.
    page.goto(f"{url}/asset-groups~{quote(f'+key:{ASSET}', safe='')}")
    # One materializable asset in view: the filter holds (the source is observed, not built).
    sync_api.expect(page.get_by_role("button", name="Materialize (1)")).to_be_visible()
    sync_api.expect(page.get_by_text("to navigate")).to_be_hidden()
    # Both nodes drawn: the source never observed, the asset never materialized.
    sync_api.expect(page.get_by_text("Never observed", exact=True)).to_be_visible()
    sync_api.expect(page.get_by_text("Never materialized", exact=True)).to_be_visible()
    page.screenshot(path=artifacts / "web_ui_asset_graph.png")
    page.get_by_role("button", name=ASSET).first.click()
    page.get_by_role("button", name="Materialize selected").click()
    # Every config field of the run has a default, so the UI launches at once (no launchpad);
    # a required field would open one, and the failure screenshot would show it.
    launched = page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}"))
    sync_api.expect(launched).to_be_visible()
    return re.search(r"[0-9a-f]{8}", launched.inner_text()).group()


def _wait_for_run_end(ui: DagsterUI) -> list[dict]:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        runs = ui.graphql(RUNS_QUERY)["runsOrError"]["results"]
        if runs and all(run["status"] in TERMINAL_STATUSES for run in runs):
            return runs
        time.sleep(1)
    pytest.fail(f"run not finished after {RUN_TIMEOUT_S} s: {runs}\n{ui.log_tail()}")


def test_materialize_clicked_on_the_asset_graph_runs_and_materializes_the_asset(
        dagster_ui, page, artifacts):
    with _screenshot_on_failure(page, artifacts / "web_ui_failure.png"):
        short_id = _launch_from_asset_graph(page, dagster_ui.url, artifacts)
        [run] = _wait_for_run_end(dagster_ui)

    assert run["status"] == "SUCCESS", dagster_ui.log_tail()
    assert run["runId"].startswith(short_id)
    assert run["assetSelection"] == [{"path": [ASSET]}]
    # The ingestion multi-asset computes its five tables together but writes only the selected.
    assert run["assetMaterializations"] == [{"assetKey": {"path": [ASSET]}}]
    latest = dagster_ui.graphql(LATEST_MATERIALIZATION_QUERY, path=[ASSET])["assetOrError"]
    assert latest["assetMaterializations"] == [{"runId": run["runId"]}]

    with _screenshot_on_failure(page, artifacts / "web_ui_failure.png"):
        page.goto(f"{dagster_ui.url}/runs/{run['runId']}")
        sync_api.expect(page.get_by_text("RUN_SUCCESS", exact=True)).to_be_visible()
    page.screenshot(path=artifacts / "web_ui_run.png")

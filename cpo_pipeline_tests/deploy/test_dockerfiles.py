"""The two images, checked without a Docker engine: what they copy exists, what they install
is the extras they claim, and the code location's command serves this project's definitions."""

import fnmatch
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from cpo_pipeline.resources.pipes_k8s import IMAGE_UID
from cpo_pipeline_tests.deploy.dockerfile import (
    DOCKER,
    REPOSITORY,
    build_args,
    copied_sources,
    expand,
    extras_of,
    instructions,
    pip_installs,
    run_commands,
)

CODE_LOCATION = DOCKER / "code-location.Dockerfile"
TRAINING = DOCKER / "training.Dockerfile"
PYPROJECT = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]


def _project_install(dockerfile: Path) -> list[str]:
    [project] = [req for install in pip_installs(dockerfile) for req in install
                 if req.startswith(".[")]
    return project


def _ignored(dockerfile: Path) -> list[str]:
    ignore = Path(f"{dockerfile}.dockerignore").read_text().splitlines()
    return [line for line in ignore if line and not line.startswith("#")]


def _last(dockerfile: Path, keyword: str) -> str:
    return [i.arguments for i in instructions(dockerfile) if i.keyword == keyword][-1]


@pytest.mark.parametrize("dockerfile", [CODE_LOCATION, TRAINING], ids=lambda p: p.stem)
def test_every_copied_path_exists_and_is_not_ignored(dockerfile):
    sources = copied_sources(dockerfile)
    ignored = _ignored(dockerfile)

    assert sources and all((REPOSITORY / source).exists() for source in sources), sources
    assert not [s for s in sources for pattern in ignored if fnmatch.fnmatch(s, pattern)]
    # pip builds the project from these: its metadata needs the readme pyproject names.
    assert {"pyproject.toml", PYPROJECT["project"]["readme"], "cpo_pipeline"} <= set(sources)


def test_the_code_location_installs_its_extras_without_the_training_stack():
    extras = extras_of(_project_install(CODE_LOCATION))

    assert extras == {"k8s"} and extras <= set(EXTRAS)
    assert "train" not in extras
    assert "dagster-k8s==0.29.27" in EXTRAS["k8s"] and "dagster-postgres==0.29.27" in EXTRAS["k8s"]
    installed = [req for install in pip_installs(CODE_LOCATION) for req in install]
    assert not [req for req in installed if req.startswith("torch")]


def test_java_is_installed_only_when_the_eval_extra_is_built_in():
    [java] = [i.arguments for i in instructions(CODE_LOCATION) if "openjdk" in i.arguments]

    for extras, expected in (("k8s", False), ("k8s,eval", True), ("eval", True)):
        script = expand(java, {"EXTRAS": extras}).replace("apt-get", "echo apt-get")
        ran = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
        assert ("openjdk-17-jre-headless" in ran.stdout) is expected, extras


def test_the_training_image_installs_cuda_torch_first_then_the_train_extra():
    installs = pip_installs(TRAINING)
    torch_pin = next(req for req in EXTRAS["train"] if req.startswith("torch"))

    assert installs[0] == [torch_pin] == ["torch==2.13.0"]
    assert extras_of(_project_install(TRAINING)) == {"train"}
    assert build_args(TRAINING)["CUDA_IMAGE"].startswith("nvidia/cuda:13.0")
    assert _last(TRAINING, "FROM") == "${CUDA_IMAGE}"
    # The accelerate configs the run config names relative to the working directory.
    assert _last(TRAINING, "WORKDIR") == "/opt/cpo-pipeline" and "configs" in copied_sources(TRAINING)


def test_a_torch_index_is_passed_only_when_given():
    [torch] = [words for words in run_commands(TRAINING) if "torch==2.13.0" in words]
    assert torch == ["pip", "install", "torch==2.13.0"]
    [line] = [i.arguments for i in instructions(TRAINING) if "torch==2.13.0" in i.arguments]
    with_index = expand(line, {"TORCH_INDEX_URL": "https://mirror.example/cu126"})
    assert with_index.endswith('pip install --index-url "https://mirror.example/cu126" torch==2.13.0')


@pytest.mark.parametrize("dockerfile", [CODE_LOCATION, TRAINING], ids=lambda p: p.stem)
def test_both_images_run_as_the_non_root_user_the_training_pod_declares(dockerfile):
    assert _last(dockerfile, "USER") == str(IMAGE_UID) != "0"
    assert f"--uid {IMAGE_UID}" in " ".join(i.arguments for i in instructions(dockerfile))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _default_signals() -> None:
    """In the child before exec: SIGTERM and SIGINT at their defaults and unblocked. Under
    `make test` the xdist worker can hand its children SIGTERM ignored or blocked (seen in full
    parallel runs, never alone), and the code server then outlives `terminate()`."""
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, signal.SIG_DFL)


def test_the_code_location_command_serves_the_projects_definitions_over_grpc(tmp_path):
    command = json.loads(_last(CODE_LOCATION, "CMD"))
    assert command[:3] == ["dagster", "code-server", "start"]
    assert command[command.index("-m") + 1] == PYPROJECT["tool"]["dagster"]["module_name"]
    assert command[command.index("-p") + 1] == _last(CODE_LOCATION, "EXPOSE") == "4000"

    port = str(_free_port())
    command[command.index("-h") + 1], command[command.index("-p") + 1] = "127.0.0.1", port
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "DAGSTER_HOME": str(tmp_path), "CPO_DATA_ROOT": str(tmp_path / "data")}
    server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True,
                              preexec_fn=_default_signals)  # noqa: PLW1509 - signals only
    try:
        deadline, healthy = time.monotonic() + 120, None
        while time.monotonic() < deadline and server.poll() is None:
            healthy = subprocess.run(  # noqa: PLW1510 - polled until it succeeds
                [str(bin_dir / "dagster"), "api", "grpc-health-check", "-h", "127.0.0.1",
                 "-p", port], capture_output=True, text=True, env=env)
            if healthy.returncode == 0:
                break
            time.sleep(2)
        assert server.poll() is None, server.stderr.read()
        assert healthy is not None and healthy.returncode == 0, healthy.stdout + healthy.stderr
    finally:
        server.terminate()
        server.wait(timeout=120)

"""The GPU-pod training client: the pod it would submit, built by dagster-k8s itself."""

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster_k8s.pipes import build_pod_body
from kubernetes.client import ApiClient

from cpo_pipeline.definitions import defs
from cpo_pipeline.resources.pipes_k8s import (
    IMAGE_UID,
    PipesK8sTrainingClient,
    pod_command,
    training_pipes_client,
)
from cpo_pipeline.resources.rooted import rooted_resources
from cpo_pipeline.resources.settings import PipelineSettings
from cpo_pipeline.training.launch import launch_command

IMAGE = "registry.example/cpo-pipeline-training:0.1.0"
# What train_model passes to `.run(env=...)`.
ASSET_ENV = {"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}


def _pod(client: PipesK8sTrainingClient, command: list[str]) -> dict:
    """The V1Pod PipesK8sClient.run would create for this call, as the API server gets it."""
    arguments = client.pod_arguments(command, ASSET_ENV)
    pod = build_pod_body(
        pod_name="dagster-test", image=arguments["image"], command=arguments["command"],
        env_vars={"DAGSTER_PIPES_CONTEXT": "ctx", **arguments["env"]},
        base_pod_meta=arguments["base_pod_meta"], base_pod_spec=arguments["base_pod_spec"])
    return ApiClient().sanitize_for_serialization(pod)


@pytest.fixture
def client(tmp_path, clean_env):
    clean_env.setenv("CPO_TRAINING_IMAGE", IMAGE)
    return PipesK8sTrainingClient(settings=PipelineSettings(data_root=str(tmp_path / "data")),
                                  env_from_secrets=["cpo-training-secrets"])


def test_the_pod_requests_gpus_on_the_gpu_node_pool(client):
    pod = _pod(client, ["python", "-m", "cpo_pipeline.training.train", "/d/run_config.json"])

    [container] = pod["spec"]["containers"]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "1", "memory": "64Gi"}
    assert container["resources"]["requests"] == {"nvidia.com/gpu": "1", "cpu": "8",
                                                  "memory": "64Gi"}
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["spec"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["securityContext"] == {"runAsUser": IMAGE_UID, "runAsGroup": IMAGE_UID,
                                              "runAsNonRoot": True, "fsGroup": IMAGE_UID}
    assert container["image"] == IMAGE
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "training"


def test_the_data_volume_is_mounted_at_the_code_locations_data_root(client, tmp_path):
    data_root = str((tmp_path / "data").resolve())
    [container] = _pod(client, ["python"])["spec"]["containers"]
    spec = _pod(client, ["python"])["spec"]

    assert {"name": "cpo-data", "mountPath": data_root} in container["volumeMounts"]
    assert {"name": "cpo-data", "persistentVolumeClaim": {"claimName": "cpo-data"}} in spec["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env == {"DAGSTER_PIPES_CONTEXT": "ctx", "PYTHONUNBUFFERED": "1",
                   "TOKENIZERS_PARALLELISM": "false", "CPO_DATA_ROOT": data_root}


def test_the_assets_launch_command_runs_on_the_images_python(client):
    command = launch_command(Path("/data/models/cpo_model/k/run_config.json"), num_processes=4,
                             accelerate_config="configs/accelerate/deepspeed_zero2.yaml")

    [container] = _pod(client, command)["spec"]["containers"]

    assert command[0] == sys.executable
    assert container["command"] == ["python", *command[1:]]
    assert container["command"][1:4] == ["-m", "accelerate.commands.launch", "--config_file"]
    assert pod_command(["/usr/bin/python3", "-c", "1"]) == ["/usr/bin/python3", "-c", "1"]


def test_secrets_reach_the_pod_by_secret_name_only(client, clean_env):
    clean_env.setenv("CPO_LLM_API_KEY", "sk-never-in-a-pod-spec")
    clean_env.setenv("HF_TOKEN", "hf_never_in_a_pod_spec")

    pod = _pod(client, ["python"])

    text = json.dumps(pod)
    assert "sk-never-in-a-pod-spec" not in text and "hf_never_in_a_pod_spec" not in text
    assert pod["spec"]["containers"][0]["envFrom"] == [
        {"secretRef": {"name": "cpo-training-secrets"}}]


def test_without_an_image_the_failure_names_the_variable(tmp_path, clean_env):
    clean_env.delenv("CPO_TRAINING_IMAGE", raising=False)
    client = PipesK8sTrainingClient(settings=PipelineSettings(data_root=str(tmp_path)))

    with pytest.raises(dg.Failure, match=r"\$CPO_TRAINING_IMAGE"):
        client.pod_arguments(["python"], {})


def test_the_launcher_is_chosen_by_the_environment(tmp_path):
    settings = PipelineSettings(data_root=str(tmp_path))

    assert isinstance(training_pipes_client(settings, {}), dg.PipesSubprocessClient)
    k8s = training_pipes_client(settings, {"CPO_TRAINING_LAUNCHER": "k8s"})
    assert isinstance(k8s, PipesK8sTrainingClient) and k8s.gpus == 1
    with pytest.raises(ValueError, match="CPO_TRAINING_LAUNCHER='slurm'"):
        training_pipes_client(settings, {"CPO_TRAINING_LAUNCHER": "slurm"})


def test_the_code_location_binds_the_pod_client_for_training_and_loads_without_dagster_k8s():
    script = (
        "import sys, dagster as dg; from cpo_pipeline.definitions import defs; "
        "dg.Definitions.validate_loadable(defs); "
        "print(type(defs.resources['pipes_subprocess_client']).__name__, "
        "'dagster_k8s' in sys.modules)")
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True, env={"CPO_TRAINING_LAUNCHER": "k8s", "PATH": "/usr/bin"})

    assert loaded.stdout.split() == ["PipesK8sTrainingClient", "False"]


class _RefusingApiServer(ThreadingHTTPServer):
    """A loopback Kubernetes API server that records each pod created and refuses it (403), so
    the real client path runs up to the API call and stops there."""

    def __init__(self):
        self.created: list[tuple[str, dict]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                server.created.append((self.path, json.loads(body)))
                status = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                     "reason": "Forbidden", "code": 403}).encode()
                self.send_response(403)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(status)))
                self.end_headers()
                self.wfile.write(status)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def api_server(tmp_path, clean_env):
    server = _RefusingApiServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test",
                      "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "users": [{"name": "test", "user": {"token": "kube-token-not-for-pods"}}],
        "contexts": [{"name": "test",
                      "context": {"cluster": "test", "user": "test", "namespace": "cpo"}}],
    }))
    clean_env.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    server.kubeconfig = kubeconfig
    yield server
    server.shutdown()
    server.server_close()


def test_the_sft_model_asset_submits_its_training_pod_through_pipes(tmp_path, clean_env, api_server):
    data_root = tmp_path / "data"
    # All train_model needs before it launches: the dataset's folder (hashed into the run key).
    train = data_root / "datasets" / "sft_dataset" / "train"
    train.mkdir(parents=True)
    (train / "data-00000-of-00001.arrow").write_bytes(b"rows")
    clean_env.setenv("CPO_TRAINING_IMAGE", IMAGE)
    resources = rooted_resources(data_root)
    resources["pipes_subprocess_client"] = PipesK8sTrainingClient(
        settings=resources["settings"], kubeconfig_file=str(api_server.kubeconfig))

    result = dg.materialize([defs.get_assets_def("sft_model")], resources=resources,
                            raise_on_error=False)

    assert not result.success
    [(path, pod)] = api_server.created
    assert path == "/api/v1/namespaces/cpo/pods"
    [container] = pod["spec"]["containers"]
    assert container["image"] == IMAGE
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["command"][:3] == ["python", "-m", "cpo_pipeline.training.train"]
    [run_config] = (data_root / "models" / "sft_model").rglob("run_config.json")
    assert container["command"][3] == str(run_config)
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert {"DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES"} <= set(env)
    assert env["CPO_DATA_ROOT"] == str(data_root.resolve())
    assert "kube-token-not-for-pods" not in json.dumps(pod)

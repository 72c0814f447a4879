"""deploy/helm/values.yaml against the Dagster chart (1.13.27) without `helm template`: the keys
its schema documents, the run launcher and coordinator config validated by Dagster's own config
types (the chart renders these keys, in snake case, into the instance's dagster.yaml), the
Kubernetes objects parsed strictly into the Kubernetes client's models, and agreement with the
images, the training pod and the vLLM Service."""

import json
import re
import tomllib
from urllib.parse import urlsplit

import dagster as dg
import pytest
import yaml
from dagster._config import process_config
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster_k8s import K8sRunLauncher
from dagster_k8s.job import get_user_defined_k8s_config
from dagster_k8s.models import k8s_model_from_dict, k8s_snake_case_dict
from kubernetes import client

from cpo_pipeline.definitions import GPU_RUN_TAGS
from cpo_pipeline.llm.endpoint_policy import allowed_hosts_from_env, check_endpoint_allowed
from cpo_pipeline.resources.pipes_k8s import GPU_NODE_LABEL, GPU_RESOURCE, IMAGE_UID
from cpo_pipeline_tests.deploy.dockerfile import DOCKER, REPOSITORY, instructions

VALUES = yaml.safe_load((REPOSITORY / "deploy" / "helm" / "values.yaml").read_text())
PYPROJECT = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())
# The chart's top-level values (its schema's DagsterHelmValues model, helm/dagster/schema).
CHART_TOP_LEVEL = {
    "global", "nameOverride", "fullnameOverride", "rbacEnabled", "imagePullSecrets",
    "dagsterWebserver", "dagsterDaemon", "dagster-user-deployments", "postgresql",
    "generatePostgresqlPasswordSecret", "generateCeleryConfigSecret", "rabbitmq", "redis",
    "runLauncher", "scheduler", "computeLogManager", "flower", "ingress", "pythonLogs",
    "serviceAccount", "telemetry", "migrate", "retention", "busybox", "concurrency",
}
# Its UserDeployment model (charts/dagster-user-deployments/values.schema.json).
USER_DEPLOYMENT_KEYS = {
    "name", "image", "dagsterApiGrpcArgs", "codeServerArgs", "includeConfigInLaunchedRuns",
    "deploymentNamespace", "port", "env", "envConfigMaps", "envSecrets", "annotations",
    "nodeSelector", "affinity", "tolerations", "podSecurityContext", "securityContext",
    "resources", "livenessProbe", "readinessProbe", "startupProbe", "labels", "volumeMounts",
    "volumes", "schedulerName", "initContainers", "sidecarContainers", "deploymentStrategy",
    "serviceAccount",
}
# Its K8sRunLauncherConfig, PostgreSQL and run-monitoring keys.
K8S_RUN_LAUNCHER_KEYS = {
    "image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile",
    "envConfigMaps", "envSecrets", "envVars", "volumeMounts", "volumes", "labels",
    "failPodOnRunFailure", "resources", "schedulerName", "securityContext", "runK8sConfig",
}
POSTGRESQL_KEYS = {"image", "enabled", "postgresqlHost", "postgresqlUsername", "postgresqlPassword",
                   "postgresqlDatabase", "postgresqlParams", "postgresqlScheme", "service"}
RUN_MONITORING_KEYS = {"enabled", "startTimeoutSeconds", "cancelTimeoutSeconds",
                       "maxResumeRunAttempts", "pollIntervalSeconds"}


def _snake(value):
    """The chart's camelCase keys as the instance's dagster.yaml spells them."""
    if isinstance(value, dict):
        return {re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower(): _snake(item)
                for key, item in value.items()}
    if isinstance(value, list):
        return [_snake(item) for item in value]
    return value


def _model(model_class, value):
    """A Kubernetes object parsed strictly: an unknown or misspelt field raises."""
    return k8s_model_from_dict(model_class, k8s_snake_case_dict(model_class, value))


@pytest.fixture(scope="module")
def deployment() -> dict:
    [only] = VALUES["dagster-user-deployments"]["deployments"]
    return only


def _env(deployment: dict) -> dict[str, str]:
    return {item["name"]: item["value"] for item in deployment["env"]}


def test_only_keys_the_chart_documents():
    assert set(VALUES) <= CHART_TOP_LEVEL
    [deployment] = VALUES["dagster-user-deployments"]["deployments"]
    assert set(deployment) <= USER_DEPLOYMENT_KEYS
    assert {"name", "image", "port"} <= set(deployment)
    assert {"repository", "pullPolicy"} <= set(deployment["image"])
    assert set(VALUES["runLauncher"]["config"]["k8sRunLauncher"]) <= K8S_RUN_LAUNCHER_KEYS
    assert set(VALUES["postgresql"]) <= POSTGRESQL_KEYS
    assert set(VALUES["dagsterDaemon"]["runMonitoring"]) <= RUN_MONITORING_KEYS


def test_the_run_launcher_is_kubernetes_and_its_config_is_valid_for_dagster_k8s():
    launcher = VALUES["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    # What the chart adds itself: the instance ConfigMap, DAGSTER_HOME, the password Secret.
    config = {**_snake(launcher["config"]["k8sRunLauncher"]),
              "instance_config_map": "dagster-instance", "dagster_home": "/opt/dagster/dagster_home",
              "postgres_password_secret": VALUES["global"]["postgresqlSecretName"]}

    result = process_config(dg.Shape(K8sRunLauncher.config_type()), config)

    assert result.success, result.errors
    _model(client.V1ResourceRequirements, launcher["config"]["k8sRunLauncher"]["resources"])
    # A partial JobSpec (the launcher fills in the rest): its field names, checked.
    job_spec = launcher["config"]["k8sRunLauncher"]["runK8sConfig"]["jobSpecConfig"]
    assert k8s_snake_case_dict(client.V1JobSpec, job_spec) == {"ttl_seconds_after_finished": 86400}


def test_queued_runs_with_the_training_jobs_gpu_tag_limited_to_one():
    coordinator = VALUES["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == "QueuedRunCoordinator"
    config = _snake(coordinator["config"]["queuedRunCoordinator"])

    result = process_config(dg.Shape(QueuedRunCoordinator.config_type()), config)

    assert result.success, result.errors
    [gpu] = config["tag_concurrency_limits"]
    assert gpu == {"key": "cpo/gpu", "limit": 1}
    assert gpu["key"] in GPU_RUN_TAGS
    assert VALUES["dagsterDaemon"]["runMonitoring"]["enabled"] is True


def test_external_postgresql_with_the_password_only_in_a_secret():
    postgresql = VALUES["postgresql"]

    assert postgresql["enabled"] is False and postgresql["postgresqlHost"]
    assert "postgresqlPassword" not in postgresql
    assert VALUES["generatePostgresqlPasswordSecret"] is False
    assert VALUES["global"]["postgresqlSecretName"]
    text = (REPOSITORY / "deploy" / "helm" / "values.yaml").read_text()
    assert not re.search(r"(?i)(password|api_key|token)\s*:\s*\S", text)


def test_the_code_location_runs_the_images_command_on_its_port(deployment):
    code_location = DOCKER / "code-location.Dockerfile"
    [cmd] = [i.arguments for i in instructions(code_location) if i.keyword == "CMD"]
    command = json.loads(cmd)
    [expose] = [i.arguments for i in instructions(code_location) if i.keyword == "EXPOSE"]

    assert deployment["codeServerArgs"] == ["-m", PYPROJECT["tool"]["dagster"]["module_name"]]
    assert deployment["codeServerArgs"] == command[-2:]
    assert str(deployment["port"]) == expose == "4000"
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}


def test_code_location_volumes_env_and_security_are_valid_kubernetes_objects(deployment):
    volumes = [_model(client.V1Volume, v) for v in deployment["volumes"]]
    mounts = [_model(client.V1VolumeMount, m) for m in deployment["volumeMounts"]]
    [_model(client.V1EnvVar, e) for e in deployment["env"]]
    [_model(client.V1SecretEnvSource, s) for s in deployment["envSecrets"]]
    security = _model(client.V1PodSecurityContext, deployment["podSecurityContext"])
    _model(client.V1ResourceRequirements, deployment["resources"])

    assert [v.persistent_volume_claim.claim_name for v in volumes] == ["cpo-data"]
    assert [m.mount_path for m in mounts] == [_env(deployment)["CPO_DATA_ROOT"]] == ["/data"]
    assert security.run_as_user == security.fs_group == IMAGE_UID


def test_training_runs_in_gpu_pods_of_the_training_image(deployment):
    env = _env(deployment)

    assert env["CPO_TRAINING_LAUNCHER"] == "k8s"
    assert "cpo-pipeline-training" in env["CPO_TRAINING_IMAGE"]
    assert not {"CPO_LLM_API_KEY", "HF_TOKEN"} & set(env)


def test_the_expert_endpoint_is_the_vllm_service_and_the_endpoint_policy_allows_it(deployment):
    env = _env(deployment)
    service = next(doc for doc in yaml.safe_load_all(
        (REPOSITORY / "deploy" / "k8s" / "vllm.yaml").read_text()) if doc["kind"] == "Service")
    url = urlsplit(env["CPO_LLM_BASE_URL"])

    assert url.hostname.split(".")[0] == service["metadata"]["name"]
    assert url.port == service["spec"]["ports"][0]["port"] and url.path == "/v1"
    assert check_endpoint_allowed(env["CPO_LLM_BASE_URL"],
                                  allowed_hosts=allowed_hosts_from_env(env)) == url.hostname


def test_the_gpu_run_tags_parse_as_dagster_k8s_config_for_training_in_the_run_pod():
    tags = json.loads((REPOSITORY / "deploy" / "k8s" / "gpu-run-tags.json").read_text())

    config = get_user_defined_k8s_config(
        {key: value if isinstance(value, str) else json.dumps(value) for key, value in tags.items()})

    assert tags["cpo/gpu"] == GPU_RUN_TAGS["cpo/gpu"]
    assert config.container_config["resources"]["limits"][GPU_RESOURCE] == "1"
    assert config.pod_spec_config["node_selector"] == {GPU_NODE_LABEL: "true"}
    _model(client.V1ResourceRequirements, config.container_config["resources"])
    [_model(client.V1Toleration, t) for t in config.pod_spec_config["tolerations"]]

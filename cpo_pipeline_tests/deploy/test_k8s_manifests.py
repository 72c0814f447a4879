"""deploy/k8s/*.yaml parsed strictly into the Kubernetes client's models (no cluster, and
`kubectl --dry-run=client` needs one for discovery), and what each manifest promises: vLLM
replicas with a GPU each behind one Service, the RBAC the Pipes client needs, the multi-node
job's rendezvous matching configs/accelerate/multi_node.yaml."""

import shlex

import pytest
import yaml
from accelerate.commands.config.config_args import ClusterConfig
from accelerate.commands.launch import launch_command_parser
from dagster_k8s.models import k8s_model_from_dict, k8s_snake_case_dict
from kubernetes import client

from cpo_pipeline.resources.pipes_k8s import GPU_NODE_LABEL, GPU_RESOURCE, IMAGE_UID
from cpo_pipeline_tests.deploy.dockerfile import REPOSITORY

K8S = REPOSITORY / "deploy" / "k8s"
MODELS = {"Deployment": client.V1Deployment, "Service": client.V1Service,
          "PersistentVolumeClaim": client.V1PersistentVolumeClaim, "Role": client.V1Role,
          "RoleBinding": client.V1RoleBinding, "Job": client.V1Job}
MULTI_NODE = REPOSITORY / "configs" / "accelerate" / "multi_node.yaml"


def _documents(name: str) -> dict[str, object]:
    """Each document of a manifest as its Kubernetes model, by kind; unknown fields raise."""
    parsed = {}
    for document in yaml.safe_load_all((K8S / name).read_text()):
        model_class = MODELS[document["kind"]]
        parsed[document["kind"]] = k8s_model_from_dict(
            model_class, k8s_snake_case_dict(model_class, document))
    return parsed


@pytest.mark.parametrize("name", sorted(p.name for p in K8S.glob("*.yaml")))
def test_every_manifest_is_made_of_valid_kubernetes_objects(name):
    assert _documents(name)


def test_vllm_runs_several_gpu_replicas_behind_one_service():
    parsed = _documents("vllm.yaml")
    deployment, service = parsed["Deployment"], parsed["Service"]
    pod = deployment.spec.template

    assert deployment.spec.replicas >= 2
    [container] = pod.spec.containers
    assert container.resources.limits[GPU_RESOURCE] == "1"
    assert pod.spec.node_selector == {GPU_NODE_LABEL: "true"}
    assert service.spec.selector.items() <= pod.metadata.labels.items()
    assert service.spec.selector == deployment.spec.selector.match_labels
    [port] = service.spec.ports
    assert port.target_port == container.ports[0].name
    assert "--served-model-name=expert" in container.args
    assert f"--port={container.ports[0].container_port}" in container.args
    assert container.readiness_probe.http_get.path == "/health"


def test_the_training_role_allows_what_the_pipes_client_calls():
    role = _documents("training-rbac.yaml")["Role"]
    verbs = {resource: set(rule.verbs) for rule in role.rules for resource in rule.resources}

    # create_namespaced_pod, read_namespaced_pod (waiting), read_namespaced_pod_log, delete.
    assert {"create", "get", "delete"} <= verbs["pods"]
    assert "get" in verbs["pods/log"]


def test_the_data_volume_is_shared_read_write_by_many_pods():
    claim = _documents("data-volume.yaml")["PersistentVolumeClaim"]

    assert claim.spec.access_modes == ["ReadWriteMany"]
    assert claim.metadata.name == "cpo-data"


def test_the_multi_node_accelerate_config_loads_and_spans_machines():
    config = ClusterConfig.from_yaml_file(MULTI_NODE)

    assert config.num_machines > 1 and config.num_processes % config.num_machines == 0
    assert config.distributed_type.value == "DEEPSPEED"
    assert config.deepspeed_config["deepspeed_multinode_launcher"] == "standard"
    assert (REPOSITORY / config.deepspeed_config["deepspeed_config_file"]).is_file()


def test_the_multi_node_job_launches_accelerate_with_each_nodes_rank():
    parsed = _documents("train-multi-node.yaml")
    job, service = parsed["Job"], parsed["Service"]
    config = ClusterConfig.from_yaml_file(MULTI_NODE)
    [container] = job.spec.template.spec.containers
    env = {item.name: item for item in container.env}

    assert job.spec.completion_mode == "Indexed"
    assert job.spec.completions == job.spec.parallelism == int(env["NNODES"].value)
    assert env["NODE_RANK"].value_from.field_ref.field_path.endswith("job-completion-index']")
    # Node 0's stable name: <job>-0.<headless service>.
    assert service.spec.cluster_ip == "None"
    assert env["MASTER_ADDR"].value == f"{job.metadata.name}-0.{service.metadata.name}"
    assert env["MASTER_ADDR"].value == config.main_process_ip
    assert int(env["MASTER_PORT"].value) == config.main_process_port == service.spec.ports[0].port
    assert container.resources.limits[GPU_RESOURCE] == env["GPUS_PER_NODE"].value
    assert job.spec.template.spec.security_context.run_as_user == IMAGE_UID

    script = container.args[0].replace("exec accelerate launch", "")
    values = {"NNODES": "2", "GPUS_PER_NODE": "8", "NODE_RANK": "1",
              "MASTER_ADDR": env["MASTER_ADDR"].value, "MASTER_PORT": "29500",
              "RUN_CONFIG": "/data/models/cpo_model/k/run_config.json"}
    words = [_expand(word, values) for word in shlex.split(script)]
    args = launch_command_parser().parse_args(words)
    assert args.config_file == "configs/accelerate/multi_node.yaml"
    assert (args.num_machines, args.num_processes, args.machine_rank) == (2, 16, 1)
    assert args.module and args.training_script == "cpo_pipeline.training.train"
    assert args.training_script_args == [values["RUN_CONFIG"]]


def _expand(word: str, values: dict[str, str]) -> str:
    if word == "$((NNODES * GPUS_PER_NODE))":
        return str(int(values["NNODES"]) * int(values["GPUS_PER_NODE"]))
    for name, value in values.items():
        word = word.replace(f"${name}", value)
    return word

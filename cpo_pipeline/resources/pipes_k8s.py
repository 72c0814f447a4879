"""Training in a Kubernetes pod with a GPU, through Dagster Pipes (the `k8s` extra).

The training assets call `.run(context=, command=, env=)` on the resource bound as
`pipes_subprocess_client`. This resource answers the same call by running that command in a pod
of the training image (`$CPO_TRAINING_IMAGE`) that requests `nvidia.com/gpu`, and delegates the
rest (pod creation, log streaming, Pipes messages, clean-up) to dagster-k8s's `PipesK8sClient`.
`CPO_TRAINING_LAUNCHER=k8s` selects it in `cpo_pipeline.definitions`; the default stays a local
subprocess.

The pod mounts the shared data volume at the code location's own data root, so the absolute
paths the asset wrote into `run_config.json` (datasets, run directory, MLflow store) are the
same inside the pod. dagster-k8s is imported only when a pod is launched: the code location
loads without the extra.
"""

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

# What a Pipes client raises when the external process fails; train_model turns it into the
# training process's own failure message (failure.json on the shared volume).
from dagster._core.errors import DagsterPipesExecutionError
from pydantic import Field

from cpo_pipeline.resources.settings import PipelineSettings
from cpo_pipeline.settings import DATA_ROOT_ENV

TRAINING_LAUNCHER_ENV = "CPO_TRAINING_LAUNCHER"
TRAINING_IMAGE_ENV = "CPO_TRAINING_IMAGE"
K8S_LAUNCHER = "k8s"
GPU_RESOURCE = "nvidia.com/gpu"
# The label the NVIDIA GPU operator's feature discovery puts on GPU nodes.
GPU_NODE_LABEL = "nvidia.com/gpu.present"
_DATA_VOLUME = "cpo-data"
_SHM_VOLUME = "dshm"
# The container runtime's default /dev/shm is 64 MiB; NCCL and DataLoader workers need more.
_SHM_SIZE = "16Gi"
# The images' non-root user (docker/*.Dockerfile); fsGroup makes the data volume writable to it.
IMAGE_UID = 10001


class PipesK8sTrainingClient(dg.ConfigurableResource):
    """Runs a training command in a GPU pod of the training image, through Dagster Pipes."""

    settings: PipelineSettings
    image: str | None = Field(
        default=None,
        description=f"The training image (docker/training.Dockerfile). Default: "
        f"${TRAINING_IMAGE_ENV}.")
    namespace: str | None = Field(
        default=None,
        description="Namespace of the training pods. Default: the code location's own (in "
        "cluster), else 'default'.")
    gpus: int = Field(default=1, description="GPUs the pod requests (`nvidia.com/gpu` limit).")
    cpu: str = Field(default="8", description="CPU the pod requests.")
    memory: str = Field(default="64Gi", description="Memory the pod requests and is limited to.")
    node_selector: dict[str, str] = Field(
        default={GPU_NODE_LABEL: "true"},
        description="Node labels a training pod must be scheduled on (your GPU node pool).")
    tolerate_gpu_taint: bool = Field(
        default=True,
        description=f"Tolerate the `{GPU_RESOURCE}` NoSchedule taint GPU node pools carry.")
    data_volume_claim: str = Field(
        default="cpo-data",
        description="PersistentVolumeClaim (ReadWriteMany) holding the data root; mounted at "
        "the code location's data root.")
    service_account: str | None = Field(
        default=None, description="Service account of the training pods.")
    kubeconfig_file: str | None = Field(
        default=None,
        description="A kubeconfig to reach the cluster with, for a code location outside it. "
        "Default: in cluster, the pod's service account; else $KUBECONFIG or ~/.kube/config.")
    env_from_secrets: list[str] = Field(
        default=[],
        description="Names of Kubernetes Secrets whose keys become the pod's environment "
        "(e.g. HF_TOKEN, MLflow credentials): values never pass through Dagster.")

    def resolved_image(self) -> str:
        image = self.image or os.environ.get(TRAINING_IMAGE_ENV, "").strip()
        if not image:
            raise dg.Failure(description=(
                f"{TRAINING_LAUNCHER_ENV}={K8S_LAUNCHER} trains in a pod, but no training image "
                f"is set: set ${TRAINING_IMAGE_ENV} (built from docker/training.Dockerfile) or "
                f"the `image` of the pipes_subprocess_client resource"))
        return image

    def pod_arguments(self, command: Sequence[str], env: Mapping[str, str]) -> dict[str, Any]:
        """What `PipesK8sClient.run` gets besides the context: image, command, env and the pod's
        metadata and spec (GPU limit, node selector, tolerations, data and shm volumes)."""
        data_root = str(self.settings.data_root_path())
        container: dict[str, Any] = {
            "resources": {
                "requests": {"cpu": self.cpu, "memory": self.memory, GPU_RESOURCE: str(self.gpus)},
                "limits": {"memory": self.memory, GPU_RESOURCE: str(self.gpus)},
            },
            "volumeMounts": [
                {"name": _DATA_VOLUME, "mountPath": data_root},
                {"name": _SHM_VOLUME, "mountPath": "/dev/shm"},
            ],
        }
        if self.env_from_secrets:
            container["envFrom"] = [{"secretRef": {"name": name}} for name in self.env_from_secrets]
        spec: dict[str, Any] = {
            "containers": [container],
            "securityContext": {"runAsUser": IMAGE_UID, "runAsGroup": IMAGE_UID,
                                "runAsNonRoot": True, "fsGroup": IMAGE_UID},
            "nodeSelector": dict(self.node_selector),
            "volumes": [
                {"name": _DATA_VOLUME,
                 "persistentVolumeClaim": {"claimName": self.data_volume_claim}},
                {"name": _SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": _SHM_SIZE}},
            ],
        }
        if self.tolerate_gpu_taint:
            spec["tolerations"] = [
                {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
        if self.service_account:
            spec["serviceAccountName"] = self.service_account
        return {
            "image": self.resolved_image(),
            "command": pod_command(command),
            "env": {**env, DATA_ROOT_ENV: data_root},
            "base_pod_meta": {"labels": {"app.kubernetes.io/part-of": "cpo-pipeline",
                                         "app.kubernetes.io/component": "training"}},
            "base_pod_spec": spec,
        }

    def run(
        self, *, context: dg.AssetExecutionContext, command: Sequence[str],
        env: Mapping[str, str] | None = None,
    ) -> dg.PipesClientCompletedInvocation:
        """`PipesSubprocessClient.run`'s call, answered by a pod; a failed pod raises
        `DagsterPipesExecutionError` as a failed subprocess does."""
        from dagster_k8s import PipesK8sClient
        from dagster_k8s.client import DagsterK8sError

        arguments = self.pod_arguments(command, env or {})
        try:
            return PipesK8sClient(kubeconfig_file=self.kubeconfig_file).run(
                context=context, namespace=self.namespace, **arguments)
        except DagsterK8sError as error:
            raise DagsterPipesExecutionError(f"training pod failed: {error}") from error


def pod_command(command: Sequence[str]) -> list[str]:
    """The command as the training image runs it: the launching process's own interpreter path
    means nothing there, so it becomes the image's `python`."""
    parts = list(command)
    if parts and parts[0] == sys.executable:
        parts[0] = "python"
    return parts


def training_pipes_client(
    settings: PipelineSettings, environ: Mapping[str, str] | None = None
) -> dg.PipesSubprocessClient | PipesK8sTrainingClient:
    """The client the training assets launch through: a local subprocess, or with
    `CPO_TRAINING_LAUNCHER=k8s` a GPU pod."""
    environ = os.environ if environ is None else environ
    launcher = environ.get(TRAINING_LAUNCHER_ENV, "").strip().lower() or "subprocess"
    if launcher == K8S_LAUNCHER:
        return PipesK8sTrainingClient(settings=settings)
    if launcher != "subprocess":
        raise ValueError(f"{TRAINING_LAUNCHER_ENV}={launcher!r}: expected 'subprocess' or "
                         f"'{K8S_LAUNCHER}'")
    return dg.PipesSubprocessClient()

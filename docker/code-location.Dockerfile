# syntax=docker/dockerfile:1
# The Dagster code location of cpo-pipeline: `cpo_pipeline.definitions` served over gRPC on port
# 4000, for the Helm chart's dagster-user-deployments (and, as the same image, every run pod the
# K8sRunLauncher starts). Without the `train` extra: torch never loads in the Dagster process, and
# training runs in the training image (docker/training.Dockerfile) through Pipes.
#
#   docker build -f docker/code-location.Dockerfile -t cpo-pipeline-code:0.1.0 .
#   docker build -f docker/code-location.Dockerfile --build-arg EXTRAS=k8s,eval -t ... .
#
# The `k8s` extra brings dagster-k8s (K8sRunLauncher / k8s_job_executor, the GPU-pod Pipes client)
# and dagster-postgres (run pods write to the instance's PostgreSQL). `eval` adds pycocoevalcap,
# whose METEOR and PTB tokenizer run Java: a JRE is installed only when it is named.
FROM python:3.11-slim-bookworm

ARG EXTRAS=k8s
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CPO_DATA_ROOT=/data \
    HF_HUB_OFFLINE=1

RUN case ",${EXTRAS}," in \
      *,eval,*) apt-get update \
        && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
        && rm -rf /var/lib/apt/lists/* ;; \
    esac

RUN groupadd --gid 10001 cpo && useradd --uid 10001 --gid 10001 --create-home cpo \
    && mkdir -p /data && chown cpo:cpo /data

WORKDIR /opt/cpo-pipeline
COPY pyproject.toml README.md ./
COPY cpo_pipeline ./cpo_pipeline
COPY configs ./configs
RUN python -m venv /opt/venv && pip install ".[${EXTRAS}]"

USER 10001
EXPOSE 4000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "cpo_pipeline.definitions"]

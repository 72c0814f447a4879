# syntax=docker/dockerfile:1
# The training process of cpo-pipeline (`python -m cpo_pipeline.training.train`, or under
# `accelerate launch`), run in a GPU pod by the training assets through Dagster Pipes
# (CPO_TRAINING_LAUNCHER=k8s; cpo_pipeline/resources/pipes_k8s.py), with the `train` extra.
#
#   docker build -f docker/training.Dockerfile -t cpo-pipeline-training:0.1.0 .
#   docker build -f docker/training.Dockerfile --build-arg EXTRAS=train,deepspeed -t ... .
#
# Base: NVIDIA's CUDA 13.0 "base" image on Ubuntu 24.04. The package registry's torch 2.13.0
# Linux wheel is the CUDA 13.0 build: it requires the CUDA 13.0.3 toolkit wheels, cuDNN 9.20
# and NCCL 2.29.7 as pip packages, so the CUDA libraries come with torch and the image needs
# only what "base" adds to Ubuntu (the CUDA compatibility package and the variables the NVIDIA
# container toolkit reads to mount the driver). CUDA 13.0 needs a host driver of the R580
# branch or newer. The "devel" variant (nvcc) is needed only to compile DeepSpeed's fused ops
# or flash-attention from source; the paper's ZeRO-2 config uses the trainer's own AdamW.
# For another CUDA, pick the matching base tag and install torch 2.13.0 from PyTorch's own
# wheel index for that CUDA (TORCH_INDEX_URL); the `train` extra's torch==2.13.0 then keeps it.
ARG CUDA_IMAGE=nvidia/cuda:13.0.0-base-ubuntu24.04
FROM ${CUDA_IMAGE}

ARG EXTRAS=train
ARG TORCH_INDEX_URL=
ENV DEBIAN_FRONTEND=noninteractive \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CPO_DATA_ROOT=/data \
    TOKENIZERS_PARALLELISM=false

# Python 3.11, the version the project is tested on (Ubuntu 24.04 ships 3.12): deadsnakes.
RUN apt-get update \
    && apt-get install -y --no-install-recommends software-properties-common gpg-agent \
    && add-apt-repository -y ppa:deadsnakes/ppa \
    && apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && apt-get purge -y software-properties-common gpg-agent && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --gid 10001 cpo && useradd --uid 10001 --gid 10001 --create-home cpo \
    && mkdir -p /data && chown cpo:cpo /data

# torch first, for this image's CUDA, so that installing the project keeps it.
RUN python3.11 -m venv /opt/venv \
    && pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch==2.13.0

WORKDIR /opt/cpo-pipeline
COPY pyproject.toml README.md ./
COPY cpo_pipeline ./cpo_pipeline
# accelerate and DeepSpeed configs, named relative to this directory in the run config
# (`accelerate_config: configs/accelerate/...`).
COPY configs ./configs
RUN pip install ".[${EXTRAS}]" \
    && python -c "import torch, cpo_pipeline.training.train; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"

USER 10001
CMD ["python", "-m", "cpo_pipeline.training.train", "--help"]

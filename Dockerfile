# hbfp-dse in a container. CPU torch by default; for CUDA:
#   docker build --build-arg BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 \
#                --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 -t hbfp-dse:cuda .
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HBFP_DSE_DB=sqlite:////results/results.db \
    HBFP_DSE_DATA=/data

# CUDA base images ship no Python; slim Python images already have it.
RUN if ! command -v python3 >/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv

WORKDIR /app
COPY pyproject.toml README.md ./
COPY hbfp_dse ./hbfp_dse
COPY sweeps ./sweeps
RUN pip install --extra-index-url "${TORCH_INDEX_URL}" '.[postgres]'

VOLUME ["/data", "/results"]
WORKDIR /results
ENTRYPOINT ["hbfp-dse"]
CMD ["--help"]

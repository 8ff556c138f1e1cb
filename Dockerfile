# The image of aemon's flow runs on a Docker or Kubernetes work pool
# (deploy/prefect-docker.yaml, deploy/prefect-kubernetes.yaml name it `aemon:3.8.8`, after the
# Prefect release it runs). aemon and its pinned dependencies are installed from the package
# registry; the code is at /opt/aemon, the deployments' working directory (their `pull` step).
#
#   docker build -t aemon:3.8.8 .          # from the repository root
#   docker push <registry>/aemon:3.8.8     # after `docker tag`, for a cluster that pulls it
#
# The Docker variant reads the configuration from its mounted home folder (AEMON_CONFIG); the
# Kubernetes variant the file copied in below (deploy/aemon-kubernetes.toml: edit it first).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false \
    AEMON_HOME=/var/lib/aemon

# Runs as an unprivileged user; the home folder (a volume on Docker) is its own.
RUN useradd --create-home --uid 10001 aemon && mkdir -p /var/lib/aemon /etc/aemon \
    && chown aemon:aemon /var/lib/aemon

WORKDIR /opt/aemon
# Dependencies first (a code change does not reinstall torch): the metadata, then the packages.
COPY pyproject.toml README.md ./
COPY features features
COPY aemodels aemodels
COPY monitoring monitoring
COPY flows flows
# Extra pip arguments, e.g. --build-arg PIP_EXTRA_ARGS="--index-url <your PyTorch CPU index>"
ARG PIP_EXTRA_ARGS=""
RUN pip install ${PIP_EXTRA_ARGS} . && pip check
COPY prefect.yaml ./
# The Kubernetes variant's configuration (AEMON_CONFIG=/etc/aemon/aemon.toml); the Docker
# variant reads the one in its mounted home instead.
COPY deploy/aemon-kubernetes.toml /etc/aemon/aemon.toml

USER aemon
# A flow run's command comes from the worker (python -m prefect.engine); this is for a shell.
CMD ["aemon", "--help"]

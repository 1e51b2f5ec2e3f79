# The orchestrator's image: one image for the API (the default command) and the workers.
#
#   docker build -t orchestrator .
#   docker build --build-arg EXTRA_REQUIREMENTS="acme-jobs==1.2 other-jobs" -t orchestrator .
#
# Third-party job types go in without editing the project: list them in a `plugins.txt`
# beside this file (pip requirement lines, copied into the build when present; paths
# inside it are not available to the build, use names, versions or URLs) or pass them
# space-separated in the EXTRA_REQUIREMENTS build argument. Both are built into wheels
# with the project and installed the same way as the bundled plugins.
#
# PYTHON_IMAGE must be a Debian-based Python 3.11+ image (python3, pip, groupadd,
# useradd). By default the builder stage takes hatchling and the dependencies from the
# package index. A build with no network (an engine started with --bridge=none, an
# air-gapped host) takes them from wheels made beforehand on a machine that has the
# index instead:
#
#   pip wheel --wheel-dir wheels . plugins/demo plugins/http plugins/shell \
#       plugins/container 'hatchling>=1.21'   # and plugins.txt's, EXTRA_REQUIREMENTS'
#   docker build -t orchestrator .
#
# When `wheels/` beside this file holds any wheel the builder installs from it alone
# (pip --no-index); the wheels must suit PYTHON_IMAGE's Python (cp311 for 3.11).
# `wheels/` is git-ignored, and .dockerignore lets only its *.whl into the context.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# plugins.tx[t] matches nothing when the operator has no plugins.txt; pyproject.toml
# keeps the instruction from having no source at all.
COPY pyproject.toml README.md plugins.tx[t] ./
COPY orchestrator_core/ orchestrator_core/
COPY api/ api/
COPY worker/ worker/
COPY cli/ cli/
COPY orchestrator_client/ orchestrator_client/
COPY plugins/ plugins/
# The host's wheels, when there is a wheels/ directory; pyproject.toml keeps the
# instruction from having no source at all (pip ignores it among the wheels).
COPY pyproject.toml wheel[s] /host-wheels/
ARG EXTRA_REQUIREMENTS=""
# Wheels of the project, the bundled plugins, the operator's plugins and every
# dependency; then a virtual environment holding exactly those wheels, installed from
# /wheels with no index, that the runtime stage copies whole. set -f keeps a
# requirement like `acme[extra]` from being read as a glob.
RUN set -f \
    && touch plugins.txt \
    && printf '%s\n' ${EXTRA_REQUIREMENTS} > /tmp/extra-requirements.txt \
    && set +f \
    && sources="" \
    && if ls /host-wheels/*.whl >/dev/null 2>&1; then \
        sources="--no-index --find-links /host-wheels"; fi \
    && pip wheel --wheel-dir /wheels ${sources} \
        . plugins/demo plugins/http plugins/shell plugins/container \
        -r plugins.txt -r /tmp/extra-requirements.txt \
    && python3 -m venv --without-pip /opt/venv \
    && pip --python /opt/venv/bin/python install --no-index --find-links /wheels /wheels/*.whl

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# shell.run and container.run execute what submitters ask for on the worker's machine:
# they are built in, but load only where an operator names them
# (-e ORCHESTRATOR_PLUGINS=demo,http,shell).
ENV ORCHESTRATOR_PLUGINS=demo,http
# The group gets the same fixed id as the user: `--user-group` alone would pick a system
# gid, leaving USER's 10001 group nameless (Celery then warns it may be running as root).
RUN groupadd --system --gid 10001 orchestrator \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/orchestrator \
        orchestrator
COPY --from=builder /opt/venv /opt/venv
USER 10001:10001
WORKDIR /home/orchestrator
EXPOSE 8000
# For the default command (the API on port 8000); a worker container overrides it
# (compose.yml does).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["orchestrator"]
# The API on every address of the container, so a published port reaches it. With no
# API keys it refuses to serve on a non-loopback address: a bare `docker run` of this
# image exits at once with an error naming ORCHESTRATOR_ALLOW_ANONYMOUS. Give it keys
# (-e ORCHESTRATOR_API_KEYS=...), or ORCHESTRATOR_ALLOW_ANONYMOUS=true for an API open
# to whoever reaches the port, on purpose.
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]

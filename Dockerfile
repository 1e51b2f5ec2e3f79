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
# PYTHON_IMAGE must be a Debian-based Python 3.11+ image (useradd, pip); the builder
# stage needs the package index for hatchling and the dependencies.

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
COPY plugins/ plugins/
ARG EXTRA_REQUIREMENTS=""
# Wheels of the project, the bundled plugins, the operator's plugins and every
# dependency; then a virtual environment holding exactly those wheels, installed from
# /wheels with no index, that the runtime stage copies whole. set -f keeps a
# requirement like `acme[extra]` from being read as a glob.
RUN set -f \
    && touch plugins.txt \
    && printf '%s\n' ${EXTRA_REQUIREMENTS} > /tmp/extra-requirements.txt \
    && pip wheel --wheel-dir /wheels \
        . plugins/demo plugins/http plugins/shell plugins/container \
        -r plugins.txt -r /tmp/extra-requirements.txt \
    && python -m venv --without-pip /opt/venv \
    && set +f \
    && pip --python /opt/venv/bin/python install --no-index --find-links /wheels /wheels/*.whl

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/orchestrator \
        orchestrator
COPY --from=builder /opt/venv /opt/venv
USER 10001:10001
WORKDIR /home/orchestrator
EXPOSE 8000
# For the default command (the API on port 8000); a worker container overrides or
# disables it (compose.yml does).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["orchestrator"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]

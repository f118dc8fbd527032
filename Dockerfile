# Two stages: the builder installs into a virtualenv, the final image copies only that venv (no pip
# cache, no build tools, no source tree). Build: docker build --build-arg VERSION=0.1.0 -t oidcproxy .
FROM python:3.11-slim AS builder
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, from the hash-locked file (pip-compile --generate-hashes --extra speed), so that
# builds repeat; then the project itself without resolving anything again.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY oidcproxy ./oidcproxy
RUN pip install --no-cache-dir --no-deps .

FROM python:3.11-slim
ARG VERSION=0.1.0
ARG SOURCE=https://github.com/example/oidcproxy
LABEL org.opencontainers.image.title="oidcproxy" \
      org.opencontainers.image.description="Authenticating reverse proxy for OpenID Connect" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent oidcproxy
COPY --from=builder /opt/venv /opt/venv
COPY LICENSE /usr/share/doc/oidcproxy/LICENSE
# Byte code was compiled at install: a read-only root works. With --workers above 1 oidcproxy needs a
# writable /tmp for its workers' socket (Kubernetes: an emptyDir; docker run --read-only --tmpfs /tmp).
ENV PATH=/opt/venv/bin:$PATH
ENV PYTHONDONTWRITEBYTECODE=1
ENV PYTHONUNBUFFERED=1
USER 10001
EXPOSE 4180
ENV OIDCPROXY_HTTP_ADDRESS=0.0.0.0:4180
ENTRYPOINT ["oidcproxy"]

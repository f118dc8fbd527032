FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home oidcproxy
WORKDIR /app
# Dependencies first, from the hash-locked file (pip-compile --generate-hashes --extra speed), so that
# builds repeat; then the project itself without resolving anything again.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY oidcproxy ./oidcproxy
RUN pip install --no-cache-dir --no-deps .
USER 10001
EXPOSE 4180
ENV OIDCPROXY_HTTP_ADDRESS=0.0.0.0:4180
ENTRYPOINT ["oidcproxy"]

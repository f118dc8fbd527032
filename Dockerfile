FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home oidcproxy
WORKDIR /app
COPY pyproject.toml README.md ./
COPY oidcproxy ./oidcproxy
RUN pip install --no-cache-dir ".[speed]"
USER 10001
EXPOSE 4180
ENV OIDCPROXY_HTTP_ADDRESS=0.0.0.0:4180
ENTRYPOINT ["oidcproxy"]

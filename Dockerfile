# exobot for deployments: `docker build -t exobot .`, then run it with a config file and a
# volume for its data (SQLite database, Matrix store). See README.md, "Deploying".
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
# fping: the connectivity plugin's ICMP probe (Debian's, as SmokePing uses). Its raw socket
# needs the container to have the NET_RAW capability; the TCP probe works without it.
RUN apt-get update && apt-get install -y --no-install-recommends fping \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --home-dir /var/lib/exobot --create-home exobot

WORKDIR /opt/exobot
COPY pyproject.toml setup.py README.md ./
COPY exobot ./exobot
COPY plugins ./plugins
# exobot and every bundled plugin (plugins/NAME/ with a pyproject.toml), in one pip run.
RUN pip install ".[postgres]" $(for p in plugins/*/pyproject.toml; do echo "./${p%/pyproject.toml}"; done)

USER exobot
WORKDIR /var/lib/exobot
VOLUME ["/var/lib/exobot"]
# The web pages and the JSON API: set `web.listen: "0.0.0.0:8080"` in the config to publish it
# (behind a TLS proxy; `web.base_url` is the public https address).
EXPOSE 8080
# Relative paths in the config (database, store_path) resolve under the volume.
ENTRYPOINT ["exobot"]
CMD ["run", "-c", "/etc/exobot/config.yaml"]

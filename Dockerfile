# exobot for deployments (README.md, "Deploying"): `podman build --format docker -t exobot .`
# (or `docker build -t exobot .`), then run it with a config file and a volume for its data.
#
# The base is Debian bookworm slim with Debian's own Python 3.11. BASE names the registry image;
# without a registry, a base made with `debootstrap --variant=minbase bookworm` and imported
# under the same name is the same thing (`devstack/image_check.py` does that).
ARG BASE=docker.io/library/debian:bookworm-slim

# ---- build stage: exobot and the bundled plugins in a venv, catalogs compiled by their builds
FROM ${BASE} AS build
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && apt-get clean && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/exobot/venv
WORKDIR /src
# The dependencies first, in a layer of their own that is rebuilt only when a pyproject.toml
# changes, not at every change of the code: every requirement (and build requirement) of
# exobot, its postgres extra and the bundled plugins. One COPY line per bundled plugin (a test
# checks that none is missing).
COPY pyproject.toml ./
COPY plugins/connectivity/pyproject.toml plugins/connectivity/
COPY plugins/procedures/pyproject.toml plugins/procedures/
COPY plugins/saved-replies/pyproject.toml plugins/saved-replies/
RUN ["/opt/exobot/venv/bin/python", "-c", "import glob, tomllib; files = ['pyproject.toml', *sorted(glob.glob('plugins/*/pyproject.toml'))]; data = [tomllib.load(open(f, 'rb')) for f in files]; reqs = {r for d in data for r in d['build-system']['requires'] + d['project'].get('dependencies', [])}; reqs |= set(data[0]['project']['optional-dependencies']['postgres']); open('/tmp/requirements.txt', 'w').write('\\n'.join(sorted(r for r in reqs if not r.lower().startswith('exobot'))))"]
RUN /opt/exobot/venv/bin/pip install -r /tmp/requirements.txt
# exobot and every bundled plugin (plugins/NAME/ with a pyproject.toml) in one pip run, their
# dependencies already there; each build compiles its .po into .mo (setup.py hooks). pip check:
# nothing the layer above missed. pip and setuptools are not needed at run time.
COPY README.md setup.py babel.cfg ./
COPY exobot ./exobot
COPY plugins ./plugins
RUN /opt/exobot/venv/bin/pip install --no-deps --no-build-isolation . \
        $(for p in plugins/*/pyproject.toml; do echo "./${p%/pyproject.toml}"; done) \
    && /opt/exobot/venv/bin/pip check \
    && /opt/exobot/venv/bin/pip uninstall -y -q pip setuptools

# ---- run stage: Debian's python3 and the tools exobot calls, no compiler, no pip
FROM ${BASE}
ENV DEBIAN_FRONTEND=noninteractive PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PATH=/opt/exobot/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# fping: the connectivity plugin's ICMP probe (Debian's, as SmokePing uses); its raw socket
# needs the NET_RAW capability (the TCP probe works without it). postgresql-client: pg_dump
# and psql for backups of a PostgreSQL database (its major version, 15, is the newest server
# it can dump).
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 fping postgresql-client ca-certificates \
    && apt-get clean && rm -rf /var/lib/apt/lists/*
# A fixed uid/gid, so a host directory or volume can be given to it (chown 10001:10001).
RUN groupadd --system --gid 10001 exobot \
    && useradd --system --uid 10001 --gid exobot --home-dir /var/lib/exobot --create-home \
       --shell /usr/sbin/nologin exobot
COPY --from=build /opt/exobot/venv /opt/exobot/venv

USER exobot
WORKDIR /var/lib/exobot
# Relative paths in the config (sqlite:///var/exobot.db, var/matrix) resolve under the volume.
VOLUME ["/var/lib/exobot"]
# The web pages, the JSON API and /healthz: set `web.listen: "0.0.0.0:8080"` in the config to
# publish it (behind a TLS proxy; `web.base_url` is the public https address).
EXPOSE 8080
# `exobot healthcheck` GETs /healthz on web.listen (0.0.0.0 is asked on 127.0.0.1): exit 0 on 200.
# (podman keeps HEALTHCHECK only in docker-format images: `podman build --format docker`.)
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["exobot", "healthcheck", "-c", "/etc/exobot/config.yaml"]
ENTRYPOINT ["exobot"]
CMD ["run", "-c", "/etc/exobot/config.yaml"]

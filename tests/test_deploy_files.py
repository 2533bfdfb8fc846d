"""compose.yaml and the Dockerfile as an administrator uses them (README: "Deploying").

The image itself is built and run by `python -m devstack.image_check` (in `.ci/run`); these
tests keep the files it does not run honest: compose.yaml parses, names its two services with
healthchecks, mounts the config read-only, and podman-compose (a dev extra) accepts it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PODMAN_COMPOSE = Path(sys.executable).parent / "podman-compose"


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_services_healthchecks_and_volumes():
    spec = compose()
    services = spec["services"]
    assert set(services) == {"exobot", "postgres"}
    assert services["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert services["exobot"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    mounts = services["exobot"]["volumes"]
    assert any(m.endswith(":/etc/exobot/config.yaml:ro") for m in mounts), mounts
    assert "exobot-data:/var/lib/exobot" in mounts
    assert "postgres-data:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert set(spec["volumes"]) == {"exobot-data", "postgres-data"}
    # The database password is written once (.env) and reaches both services.
    url = services["exobot"]["environment"]["EXOBOT__DATABASE__URL"]
    assert url.startswith("postgresql+psycopg://exobot:${POSTGRES_PASSWORD")
    assert url.endswith("@postgres/exobot")
    # Only on loopback: the TLS proxy on the host publishes it.
    assert all(p.startswith("127.0.0.1:") for p in services["exobot"]["ports"])


def test_compose_postgres_matches_the_image_pg_dump():
    # The image's postgresql-client is bookworm's 15; pg_dump refuses newer servers.
    image = compose()["services"]["postgres"]["image"]
    assert re.search(r":15(-|$)", image), image
    assert "postgresql-client" in (ROOT / "Dockerfile").read_text()


def test_dockerfile_base_user_and_entrypoint():
    text = (ROOT / "Dockerfile").read_text()
    assert "ARG BASE=docker.io/library/debian:bookworm-slim" in text
    assert text.count("FROM ${BASE}") == 2  # build stage and run stage, one base
    assert re.search(r"^USER exobot$", text, re.M)
    assert 'ENTRYPOINT ["exobot"]' in text
    assert 'CMD ["exobot", "healthcheck", "-c", "/etc/exobot/config.yaml"]' in text


def test_dockerfile_copies_every_bundled_plugin_for_its_dependency_layer():
    text = (ROOT / "Dockerfile").read_text()
    for project in sorted(ROOT.glob("plugins/*/pyproject.toml")):
        name = project.parent.name
        line = f"COPY plugins/{name}/pyproject.toml plugins/{name}/"
        assert line in text, f"the Dockerfile misses {line!r}"


@pytest.mark.skipif(not PODMAN_COMPOSE.exists(), reason="podman-compose (dev extra) missing")
@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")
def test_podman_compose_accepts_it_and_requires_the_password(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("{}\n")
    env = {**os.environ, "EXOBOT_CONFIG": str(config), "POSTGRES_PASSWORD": "s3cret"}
    cmd = [str(PODMAN_COMPOSE), "-f", "compose.yaml", "config"]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    exobot = resolved["services"]["exobot"]
    assert exobot["environment"]["EXOBOT__DATABASE__URL"].endswith(":s3cret@postgres/exobot")
    assert f"{config}:/etc/exobot/config.yaml:ro" in exobot["volumes"]

    env.pop("POSTGRES_PASSWORD")
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr

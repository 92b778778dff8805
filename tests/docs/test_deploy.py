"""The deploy recipes parse, and name only commands, flags and variables that exist.

No Docker engine, cluster or systemd runs here, so each file is parsed (YAML with pyyaml, the
Dockerfile, systemd units and the nginx snippet by small parsers) and every ``pinsignal ...`` command
line in them goes through the real CLI parser; every variable through ``Config.from_env``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from docsupport import check_command, check_environment, check_variables

from support import ROOT

DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"


def load_yaml(path: Path) -> list[Any]:
    with path.open() as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


# ---------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_dockerfile_is_multi_stage_slim_and_non_root() -> None:
    instructions = dockerfile_instructions()
    bases = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert len(bases) >= 2, "build and runtime stages"
    assert "slim" in bases[-1] or "alpine" in bases[-1]
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    # every COPY source from the build context exists in the repository
    for keyword, rest in instructions:
        if keyword == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies {source!r}, which does not exist"


def test_dockerfile_entrypoint_command_and_variables() -> None:
    instructions = dict(dockerfile_instructions())
    import json

    assert json.loads(instructions["ENTRYPOINT"]) == ["pinsignal"]
    check_command(json.loads(instructions["CMD"]), "Dockerfile CMD")
    env_names = re.findall(r"([A-Z_][A-Z0-9_]*)=", instructions["ENV"])
    check_variables(env_names, "Dockerfile ENV")


# ---------------------------------------------------------------------------- docker compose


def test_compose_services_commands_and_environment() -> None:
    (compose,) = load_yaml(DEPLOY / "docker-compose.yml")
    services = compose["services"]
    assert {"redis", "web", "worker"} <= set(services)
    redis = services["redis"]
    assert "--appendonly" in redis["command"] and "yes" in redis["command"], "Redis must persist (AOF)"
    assert any(str(v).endswith(":/data") for v in redis["volumes"])
    assert services["web"]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (DEPLOY / services["web"]["build"]["context"] / services["web"]["build"]["dockerfile"]).exists()
    for name in ("web", "worker"):
        service = services[name]
        check_command(service["command"], f"docker-compose {name}")
        check_environment(service["environment"], f"docker-compose {name}")
        assert service["environment"]["REDIS_URL"].startswith("redis://redis:")
        assert service["healthcheck"]["test"]
    assert "/_ps/health" in " ".join(services["web"]["healthcheck"]["test"])
    assert "/healthz" in " ".join(services["worker"]["healthcheck"]["test"])


# ---------------------------------------------------------------------------- Kubernetes


def kube_objects() -> dict[tuple[str, str], dict[str, Any]]:
    objects = {}
    for path in sorted(KUBE.glob("*.yaml")):
        for doc in load_yaml(path):
            if doc.get("kind") == "Kustomization":
                for resource in doc["resources"]:
                    assert (KUBE / resource).exists(), f"kustomization lists missing {resource}"
                continue
            objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def test_kubernetes_deployments_have_probes_resources_and_valid_commands() -> None:
    objects = kube_objects()
    config_map = objects[("ConfigMap", "pinsignal")]["data"]
    secret = objects[("Secret", "pinsignal")]["stringData"]
    assert "REDIS_URL" in secret and "PINTEREST_ACCESS_TOKEN" in secret and "PINSIGNAL_SECRET" in secret
    for name, health in (("pinsignal-web", "/_ps/health"), ("pinsignal-worker", "/healthz")):
        deployment = objects[("Deployment", name)]
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        check_command(container["args"], f"{name} args")
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["path"] == health, f"{name} {probe}"
        assert container["resources"]["requests"] and container["resources"]["limits"]
        env = {**config_map, **secret, **{e["name"]: e["value"] for e in container.get("env", [])}}
        check_environment(env, name)
        refs = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
        assert refs == {"pinsignal"}


def test_kubernetes_pdb_and_worker_autoscaler() -> None:
    objects = kube_objects()
    hpa = objects[("HorizontalPodAutoscaler", "pinsignal-worker")]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "pinsignal-worker"}
    assert hpa["spec"]["minReplicas"] >= 1 < hpa["spec"]["maxReplicas"]
    for name in ("pinsignal-web", "pinsignal-worker"):
        pdb = objects[("PodDisruptionBudget", name)]
        labels = objects[("Deployment", name)]["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    redis = objects[("StatefulSet", "pinsignal-redis")]
    assert "--appendonly" in redis["spec"]["template"]["spec"]["containers"][0]["args"]


# ---------------------------------------------------------------------------- systemd


def systemd_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            assert line.endswith("]"), f"{path.name}: bad section line {line!r}"
            current = line[1:-1]
            sections[current] = []
            continue
        assert current is not None and "=" in line, f"{path.name}: bad line {line!r}"
        key, _, value = line.partition("=")
        sections[current].append((key.strip(), value.strip()))
    return sections


@pytest.mark.parametrize("unit", ["pinsignal-worker@.service", "pinsignal-proxy.service"])
def test_systemd_units(unit: str) -> None:
    sections = systemd_unit(DEPLOY / "systemd" / unit)
    assert {"Unit", "Service", "Install"} <= set(sections)
    service = dict(sections["Service"])
    assert service["User"] not in ("root", "0")
    argv = shlex.split(service["ExecStart"])
    assert Path(argv[0]).name == "pinsignal"
    check_command(argv[1:], unit)
    env_file = service["EnvironmentFile"].lstrip("-")
    assert Path(env_file).name == "pinsignal.env"
    variables = [value.split("=", 1)[0] for key, value in sections["Service"] if key == "Environment"]
    check_variables(variables, unit)


def test_systemd_environment_file() -> None:
    env = {}
    for line in (DEPLOY / "systemd" / "pinsignal.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    check_environment(env, "pinsignal.env")
    assert {"PINTEREST_AD_ACCOUNT_ID", "PINTEREST_ACCESS_TOKEN", "PINSIGNAL_SECRET", "REDIS_URL"} <= set(env)


# ---------------------------------------------------------------------------- nginx


def test_nginx_snippet_forwards_to_the_proxy_with_client_headers() -> None:
    text = (DEPLOY / "nginx" / "pinsignal.conf").read_text()
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    assert code.count("{") == code.count("}"), "unbalanced braces"
    for statement in re.split(r"[;{}]", code):
        statement = statement.strip()
        assert not statement or re.match(r"^[a-z_0-9]+(\s|$)", statement), f"not an nginx directive: {statement!r}"
    upstreams = set(re.findall(r"upstream\s+(\S+)\s*{", code))
    targets = set(re.findall(r"proxy_pass\s+https?://([^/;\s]+)", code))
    assert targets and targets <= upstreams
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in code
    assert "X-Forwarded-Proto $scheme" in code
    # the upstream is where the systemd proxy unit listens
    proxy_unit = dict(systemd_unit(DEPLOY / "systemd" / "pinsignal-proxy.service")["Service"])
    port = shlex.split(proxy_unit["ExecStart"])
    assert f"server 127.0.0.1:{port[port.index('--port') + 1]};" in code


# ---------------------------------------------------------------------------- health endpoints


@pytest.mark.integration
def test_the_probed_health_endpoints_answer(redis_url: str, tmp_path: Path) -> None:
    """The web tier's ``/_ps/health`` and the worker's ``/healthz`` (what every recipe probes) are real."""
    import httpx

    from support import free_port, pinsignal_cmd, run_process

    env = {"REDIS_URL": redis_url, "PINTEREST_AD_ACCOUNT_ID": "549755885175", "PINTEREST_ACCESS_TOKEN": "deploy-test",
           "PINTEREST_API_URL": f"http://127.0.0.1:{free_port()}", "PINSIGNAL_SECRET": "deploy-test-secret-0123456789",
           "PINSIGNAL_DATA_DIR": str(tmp_path)}
    web_port, metrics_port = free_port(), free_port()
    web = pinsignal_cmd("proxy", "--port", str(web_port), "--upstream", f"http://127.0.0.1:{free_port()}")
    worker = pinsignal_cmd("worker")
    with run_process(web, port=web_port, env=env, log=tmp_path / "web.log"), \
            run_process(worker, port=metrics_port, env={**env, "PINSIGNAL_METRICS_PORT": str(metrics_port)},
                        log=tmp_path / "worker.log"):
        web_health = httpx.get(f"http://127.0.0.1:{web_port}/_ps/health", timeout=10)
        assert web_health.status_code == 200, web_health.text
        worker_health = httpx.get(f"http://127.0.0.1:{metrics_port}/healthz", timeout=10)
        assert worker_health.status_code == 200, worker_health.text
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
        assert "pinsignal_events_delivered" in metrics.text

"""The Docker and Kubernetes variants of prefect.yaml (deploy/prefect-docker.yaml,
deploy/prefect-kubernetes.yaml): the same deployments as prefect.yaml on another pool, every
entrypoint a flow, every job variable one that Prefect's own base job template for that worker
type declares (the template Prefect ships offline), with a value its schema accepts; the image
they name is the one the Dockerfile builds, its configuration a valid one; and `prefect
work-pool create --type docker|kubernetes` + `prefect deploy --prefect-file ...` register
them on a Prefect API. No Docker or cluster is needed."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from prefect.flows import Flow, load_flow_from_entrypoint

ROOT = Path(__file__).resolve().parents[2]
BASE = yaml.safe_load((ROOT / "prefect.yaml").read_text())
VARIANTS = {kind: ROOT / "deploy" / f"prefect-{kind}.yaml" for kind in ("docker", "kubernetes")}
WORKDIR = "/opt/aemon"


def variant(kind: str) -> dict:
    return yaml.safe_load(VARIANTS[kind].read_text())


def base_job_template(kind: str) -> dict:
    """The default base job template Prefect bundles for the worker type (no network needed)."""
    import prefect

    path = Path(prefect.__file__).parent / "server/api/collections_data/views/aggregate-worker-metadata.json"
    metadata = json.loads(path.read_text())
    return metadata[f"prefect-{kind}"][kind]["default_base_job_configuration"]


@pytest.mark.parametrize("kind", VARIANTS)
def test_a_variant_declares_the_deployments_of_prefect_yaml_on_its_own_pool(kind):
    spec = variant(kind)
    assert spec["prefect-version"] == BASE["prefect-version"]
    # the runs start where the image holds the code, not in the folder `prefect deploy` ran in
    assert spec["pull"] == [{"prefect.deployments.steps.set_working_directory": {"directory": WORKDIR}}]
    ours, theirs = spec["deployments"], BASE["deployments"]
    assert [d["name"] for d in ours] == [d["name"] for d in theirs]
    for mine, base in zip(ours, theirs, strict=True):
        assert {k: v for k, v in mine.items() if k != "work_pool"} == \
            {k: v for k, v in base.items() if k != "work_pool"}, mine["name"]
        assert mine["work_pool"]["name"] == f"aemon-{kind}"


@pytest.mark.parametrize("kind", VARIANTS)
def test_every_entrypoint_is_a_flow_and_its_parameters_validate(kind, monkeypatch):
    monkeypatch.chdir(ROOT)  # prefect deploy runs from the repository root, the image from WORKDIR
    for deployment in variant(kind)["deployments"]:
        flow = load_flow_from_entrypoint(deployment["entrypoint"])
        assert isinstance(flow, Flow), deployment["entrypoint"]
        flow.validate_parameters(deployment.get("parameters", {}))


@pytest.mark.parametrize("kind", VARIANTS)
def test_every_job_variable_is_one_the_workers_base_job_template_declares(kind):
    from prefect.utilities.schema_tools import validate

    schema = base_job_template(kind)["variables"]
    declared = set(schema["properties"])
    for deployment in variant(kind)["deployments"]:
        variables = deployment["work_pool"]["job_variables"]
        unknown = set(variables) - declared
        assert not unknown, f"{deployment['name']}: {sorted(unknown)} are not variables of the {kind} worker"
        assert not validate(variables, schema, ignore_required=True), deployment["name"]
        env = variables["env"]
        assert env["PREFECT_API_URL"].startswith("http://") and env["PREFECT_API_URL"].endswith("/api")
        assert env["AEMON_CONFIG"].endswith(".toml")
    train = next(d for d in variant(kind)["deployments"] if d["name"] == "pumps-train")["work_pool"]["job_variables"]
    ingest = next(d for d in variant(kind)["deployments"] if d["name"] == "pumps-ingest")["work_pool"]["job_variables"]
    limit = "mem_limit" if kind == "docker" else "memory_limit"
    assert int(re.sub(r"\D", "", train[limit])) > int(re.sub(r"\D", "", ingest[limit]))  # training gets more


def test_the_variants_run_the_image_the_dockerfile_builds_with_a_valid_configuration():
    from flows.config import AemonConfig

    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"WORKDIR {WORKDIR}" in dockerfile
    docker = variant("docker")["deployments"][0]["work_pool"]["job_variables"]
    assert f"docker build -t {docker['image']} ." in dockerfile
    # the Docker variant's home is the mounted host folder; its config lies there
    (volume,) = docker["volumes"]
    mounted = volume.split(":")[1]
    assert docker["env"]["AEMON_CONFIG"].startswith(mounted + "/") and docker["network_mode"] == "host"
    # the Kubernetes variant's config is the file the Dockerfile copies to AEMON_CONFIG: no local path in it
    kubernetes = variant("kubernetes")["deployments"][0]["work_pool"]["job_variables"]
    assert kubernetes["image"].endswith("/" + docker["image"])
    copied = re.search(r"^COPY (deploy/\S+\.toml) (\S+)$", dockerfile, re.M)
    assert copied is not None and copied[2] == kubernetes["env"]["AEMON_CONFIG"]
    table = tomllib.loads((ROOT / copied[1]).read_text())
    config = AemonConfig.model_validate(table)  # validated without reading its Secret blocks
    assert config.inbox("pumps") == "s3://aemon/inbox/pumps"
    assert config.warehouse.kind == "postgres" and config.warehouse.data_path.startswith("s3://")
    assert set(config.secrets) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PGPASSWORD"}
    assert "password" not in table["warehouse"]["catalog"]
    # the image leaves out what it does not run
    assert {"tests", "bench", ".venv"} <= set((ROOT / ".dockerignore").read_text().split())


@pytest.mark.slow
def test_pools_are_created_and_the_variants_deployed_with_prefects_cli(prefect_harness, tmp_path):
    """The README's commands against the test API: `prefect work-pool create NAME --type
    docker|kubernetes`, then `prefect deploy --all --prefect-file deploy/...yaml`; the server
    (which checks job variables against the pool's template) keeps every deployment with its
    pool, variables, schedule and working directory."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")},
           "PREFECT_API_URL": str(PREFECT_API_URL.value()), "PYTHONPATH": str(ROOT),
           "PREFECT_HOME": str(tmp_path / "prefect-home")}
    prefect = [sys.executable, "-m", "prefect"]
    for kind, path in VARIANTS.items():
        for args in (["work-pool", "create", f"aemon-{kind}", "--type", kind, "--overwrite"],
                     ["--no-prompt", "deploy", "--all", "--prefect-file", str(path.relative_to(ROOT))]):
            done = subprocess.run([*prefect, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    async def registered() -> dict:
        async with get_client() as client:
            pools = {p.name: p.type for p in await client.read_work_pools()}
            found = {}
            for kind in VARIANTS:
                for deployment in variant(kind)["deployments"]:
                    flow_name = load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"])).name
                    stored = await client.read_deployment_by_name(f"{flow_name}/{deployment['name']}")
                    found[(kind, deployment["name"])] = stored
            return {"pools": pools, "deployments": found}

    state = asyncio.run(registered())
    assert state["pools"].get("aemon-docker") == "docker" and state["pools"].get("aemon-kubernetes") == "kubernetes"
    # deployed last, the Kubernetes variant holds the names now: each is on its pool with its variables
    for (kind, name), stored in state["deployments"].items():
        if kind != "kubernetes":
            continue
        spec = next(d for d in variant(kind)["deployments"] if d["name"] == name)
        assert stored.work_pool_name == f"aemon-{kind}", name
        assert stored.job_variables == spec["work_pool"]["job_variables"], name
        assert stored.pull_steps == variant(kind)["pull"], name
        assert len(stored.schedules) == 1, name

"""Crash safety, proven by kill -9: the ingest, train, score and drift steps are killed
(SIGKILL, a real process: tests/reliability/crash_worker.py) at seeded random moments, then
run again to completion in a fresh process, and the stores must be those of an
uninterrupted run.

Each trial starts from the same prepared home (tests/reliability/crash_trials.Lab): the
synthetic stream in the inbox (ingest), ingested (train), trained (score), scored (drift).
The kill moment: a phase of the step (the one that writes; for train, the data preparation
with its quality report, the registration of the versions, or the gate's decision) and a delay drawn uniformly in
[0, 1.2 x that phase's duration in the uninterrupted reference run], so some kills land
after the step finished. The test id carries the seed; the moment is printed.

Re-run: ingest and score always run again (they are idempotent: a re-run after a complete
run must change nothing). Train and drift add a training / a check per run by design, so
they run again only when the killed run had not finished (its last write done), as a
scheduler retries a crashed run and not a finished one.

"Converges" means, after the re-run:
- warehouse: every table equal to the reference's, sorted, ignoring the columns that record
  when / by which run a row was written (crash_trials.run_time_column); the lake's readings
  equal; every data file the catalog lists exists, and files on disk it does not list (parts
  a killed writer staged) are never read: SQL sees exactly the reference's rows.
- MLflow: no run left RUNNING; for train (version numbers differ, so equivalence, not bytes):
  `champion` is set and points at a complete version (gate tags, not marked incomplete) whose
  artifacts load and score readings, of the reference champion's detector kind; every alias
  does; every version lacking gate tags is marked incomplete and `aemon models compare` shows
  it as such instead of an empty verdict.
"""
from __future__ import annotations

import json
import random
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from flows.config import load_config
from flows.demo import write_inbox
from monitoring.errors import RegistryError
from monitoring.models import registry
from tests.conftest import FAST_DETECTOR, SMALL_SPEC, write_config
from tests.reliability.crash_trials import Lab

N_TRIALS = 20
# one detector kind, few epochs: a training costs seconds, most of it MLflow's model logging
TRAIN_CONFIG = FAST_DETECTOR + "epochs = 3\nkinds = [\"mlp_ae\"]\n"
# (phase, weight) where a step's kill moment is counted from
KILL_PHASES = {
    "ingest": [("ingest", 1)],
    "train": [("prepare", 1), ("register", 2), ("gate", 1)],
    "score": [("score", 1)],
    "drift": [("check", 1)],
}
BEFORE = {"ingest": "inbox", "train": "ingested", "score": "trained", "drift": "scored"}
ALWAYS_RERUN = {"ingest", "score"}


def phase_seconds(marks: dict[str, float]) -> dict[str, float]:
    """Seconds of each phase, from the marks of a run that finished."""
    order = sorted(marks.items(), key=lambda item: item[1])
    return {phase: order[i + 1][1] - at for i, (phase, at) in enumerate(order[:-1])}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The prepared homes, the reference state after each step, and each phase's duration."""
    lab = Lab(tmp_path_factory.mktemp("crash"))
    started = time.monotonic()
    config = load_config(write_config(lab.home, TRAIN_CONFIG))
    _, _, clean_end = write_inbox(config, SMALL_SPEC)
    lab.args = {"train": {"train_end": clean_end.isoformat()}}
    lab.reference, lab.durations = {}, {}
    lab.save(BEFORE["ingest"])
    lab.snapshot_state = {BEFORE["ingest"]: lab.inspect()}
    for step, after in [("ingest", "ingested"), ("train", "trained"), ("score", "scored"), ("drift", None)]:
        reply = lab.run_ok(step, **lab.args.get(step, {}))
        lab.durations[step] = phase_seconds(reply["marks"])
        lab.reference[step] = lab.inspect(load=step == "train")
        if after:
            lab.save(after)
            lab.snapshot_state[after] = lab.reference[step]
    lab.trials = []
    lab.prepare_s = time.monotonic() - started
    yield lab
    total = sum(t["wall_s"] for t in lab.trials)
    print(f"\ncrash trials: prepare {lab.prepare_s:.1f} s, {len(lab.trials)} trials {total:.1f} s")
    for step in KILL_PHASES:
        trials = [t for t in lab.trials if t["step"] == step]
        print(f"  {step}: {len(trials)} trials, {sum(t['killed'] for t in trials)} killed mid-step, "
              f"{sum(bool(t['unlisted']) for t in trials)} left unlisted files, "
              f"{sum(t['recovered_runs'] > 0 for t in trials)} left runs ended KILLED, "
              f"{sum(t['incomplete'] > 0 for t in trials)} left versions marked incomplete, "
              f"{sum(t['wall_s'] for t in trials):.1f} s")
    lab.close()


def kill_moment(lab, step: str, seed: int) -> dict:
    rng = random.Random(f"{step}-{seed}")
    phases, weights = zip(*KILL_PHASES[step], strict=True)
    phase = rng.choices(phases, weights)[0]
    return {"phase": phase, "delay": round(rng.uniform(0, 1.2 * lab.durations[step][phase]), 3)}


def assert_warehouse_converged(reference: dict, state: dict) -> None:
    ref, got = reference["warehouse"], state["warehouse"]
    assert got["tables"].keys() == ref["tables"].keys()
    for name, expected in ref["tables"].items():
        pd.testing.assert_frame_equal(got["tables"][name], expected, obj=name)
    assert got["visible_files"] <= got["disk_files"], "the catalog lists data files missing on disk"


def unlisted_files(state: dict) -> set[str]:
    """Data files on disk the catalog does not list, by name (a restored home keeps the names)."""
    return {Path(p).name for p in state["warehouse"]["disk_files"] - state["warehouse"]["visible_files"]}


def complete(version: dict) -> bool:
    return "gate.role" in version["tags"] and version["tags"].get("aemon.incomplete") != "true"


def assert_registry_converged(reference: dict, state: dict, step: str) -> None:
    registry = state["registry"]
    running = [(r["name"], r["run_id"]) for r in registry["runs"] if r["status"] == "RUNNING"]
    assert not running, f"runs left RUNNING: {running}"
    pending = [m for m in registry["logged_models"] if m["status"] == "PENDING"]
    assert not pending, f"models left PENDING: {pending}"
    if step != "train":
        assert registry["aliases"] == reference["registry"]["aliases"]
        assert len(registry["versions"]) == len(reference["registry"]["versions"])
        return
    versions = {v["version"]: v for v in registry["versions"]}
    assert "champion" in registry["aliases"], f"no champion; versions {versions}"
    for alias, number in registry["aliases"].items():
        assert complete(versions[number]), f"{alias} -> v{number}, which is incomplete: {versions[number]['tags']}"
        assert "error" not in registry["loaded"][alias], registry["loaded"][alias]
        assert registry["loaded"][alias]["scored"] > 0
    assert registry["loaded"]["champion"]["kind"] == reference["registry"]["loaded"]["champion"]["kind"]
    for number, version in versions.items():
        if "gate.role" not in version["tags"]:
            assert version["tags"].get("aemon.incomplete") == "true", f"v{number} has no gate tags and is not " \
                                                                      f"marked incomplete: {version['tags']}"
    history = [int(v) for v in json.loads(registry["model_tags"].get("champion_history", "[]"))]
    for number, version in versions.items():  # a "promoted" verdict took effect, unless marked incomplete
        if version["tags"].get("gate.role") == "champion" and complete(version):
            assert number in history or registry["aliases"]["champion"] == number, f"v{number} promoted, never champion"
    compare = registry["compare"]
    assert (compare["gate"] != "").all(), f"`models compare` shows versions without a verdict:\n{compare}"


@pytest.mark.slow
@pytest.mark.parametrize("step", list(KILL_PHASES))
@pytest.mark.parametrize("seed", range(N_TRIALS))
def test_kill_then_rerun_converges(lab, step, seed):
    kill = kill_moment(lab, step, seed)
    started = time.monotonic()
    lab.restore(BEFORE[step])
    killed = lab.run(step, kill=kill, **lab.args.get(step, {}))
    print(f"{step} seed {seed}: SIGKILL {kill['delay']} s into {kill['phase']} "
          f"({'killed' if killed['killed'] else 'exit ' + str(killed['exit'])}, marks {killed['marks']})")
    assert killed["killed"] or killed["exit"] == 0, lab.log_tail()
    if step in ALWAYS_RERUN or "done" not in killed["marks"]:
        lab.run_ok(step, **lab.args.get(step, {}))
    state = lab.inspect(load=step == "train")
    # files on disk the catalog does not list (never read by SQL), beyond as many as the
    # uninterrupted run leaves (DuckLake keeps replaced files until maintenance); names differ per run
    unlisted = sorted(unlisted_files(state) - unlisted_files(lab.snapshot_state[BEFORE[step]]))
    extra = len(unlisted_files(state)) - len(unlisted_files(lab.reference[step]))
    lab.trials.append({"step": step, "seed": seed, "wall_s": time.monotonic() - started, **kill,
                       "killed": killed["killed"], "unlisted": unlisted if extra > 0 else [],
                       "incomplete": sum(v["tags"].get("aemon.incomplete") == "true"
                                         for v in state["registry"]["versions"]),
                       "recovered_runs": sum(r["status"] == "KILLED" for r in state["registry"]["runs"])})
    if extra > 0:
        print(f"  {extra} more files than the reference that the catalog does not list: {unlisted}")
    assert_warehouse_converged(lab.reference[step], state)
    assert_registry_converged(lab.reference[step], state, step)


def ended_process_tag() -> str:
    """The PROCESS_TAG of a process that has ended (run and reaped here)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return f"{socket.gethostname()}:{process.pid}:12345"


def test_what_an_ended_process_left_is_recovered_by_the_next_run(tmp_path):
    """A run RUNNING, the model it was logging and a version never judged by the gate, all
    of a process that ended: compare shows the version incomplete, promote refuses it; the
    next aemon run in the experiment ends the run KILLED, the model FAILED and tags the
    version. This process's own run and version (a training in progress) are left alone,
    shown as pending."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = registry.client_for(uri)
    experiment = registry.ensure_experiment(client, "pumps", str(tmp_path / "artifacts"))
    dead = {registry.PROCESS_TAG: ended_process_tag()}
    killed_run = client.create_run(experiment, tags=dead).info.run_id
    live_run = client.create_run(experiment, tags=registry.process_tags()).info.run_id
    logging = client.create_logged_model(experiment, source_run_id=killed_run).model_id  # PENDING
    name = registry.model_name("pumps")
    client.create_registered_model(name)
    client.create_model_version(name, source=f"runs:/{killed_run}/model", run_id=killed_run, tags=dead)
    client.create_model_version(name, source=f"runs:/{live_run}/model", run_id=live_run,
                                tags=registry.process_tags())

    gates = registry.compare_versions(uri, "pumps").set_index("version")["gate"]
    assert gates.to_dict() == {1: "incomplete", 2: "pending"}
    with pytest.raises(RegistryError, match="version 1 is incomplete"):
        registry.promote(uri, "pumps", 1)

    registry.ensure_experiment(client, "pumps", str(tmp_path / "artifacts"))
    assert client.get_run(killed_run).info.status == "KILLED"
    assert client.get_run(live_run).info.status == "RUNNING"
    assert client.get_logged_model(logging).status == "FAILED"
    assert client.get_model_version(name, "1").tags[registry.INCOMPLETE_TAG] == "true"
    assert registry.INCOMPLETE_TAG not in client.get_model_version(name, "2").tags


def test_the_tracking_store_is_made_whole_in_a_temporary_file(tmp_path):
    """The store appears complete or not at all; a temporary one a killed process left is removed."""
    path = tmp_path / "mlflow.db"
    process = subprocess.Popen(["true"])
    process.wait()
    stale = tmp_path / f".mlflow.db.{process.pid}.tmp"
    stale.write_bytes(b"half a database")
    registry.ensure_store(f"sqlite:///{path}")
    assert path.exists() and not stale.exists()
    assert list(tmp_path.iterdir()) == [path]
    client = registry.client_for(f"sqlite:///{path}")
    assert [e.name for e in client.search_experiments()] == ["Default"]

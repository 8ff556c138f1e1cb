"""`aemon models list` reads a SQLite tracking store without MLflow's client: it must give
exactly the client's answer, and hand over to the client wherever it cannot be sure."""
from __future__ import annotations

import shutil
import sqlite3

import pandas as pd
import pytest

from monitoring.models import registry
from monitoring.models.listing import CHALLENGER, CHAMPION, HISTORY_TAG, list_models_from_store
from monitoring.store.mlflow_tables import KNOWN_REVISIONS, read_registered_models


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A real SQLite tracking store: two aemon models (aliases, history, a deleted version),
    a model of someone else's, and one with no versions."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    uri = f"sqlite:///{path}"
    client = registry.client_for(uri)
    for name, n in (("pumps-detector", 4), ("valves-detector", 1), ("someone-elses-model", 2)):
        client.create_registered_model(name)
        for _ in range(n):
            client.create_model_version(name, source="file:///nowhere", run_id=None)
    client.set_registered_model_alias("pumps-detector", CHAMPION, "3")
    client.set_registered_model_alias("pumps-detector", CHALLENGER, "4")
    client.set_registered_model_tag("pumps-detector", HISTORY_TAG, "[1, 3]")
    client.delete_model_version("pumps-detector", "2")
    client.create_registered_model("empty_stream-detector")  # "_" is no wildcard
    return path, uri


def test_the_store_read_gives_the_clients_table(store):
    _, uri = store
    fast = list_models_from_store(uri)
    assert fast is not None
    pd.testing.assert_frame_equal(fast, registry.list_models(uri))
    pumps = fast.set_index("model").loc["pumps-detector"]
    assert (pumps["versions"], pumps["champion"], pumps["challenger"], pumps["champion_history"]) == (3, 3, 4, "1 3")
    assert "someone-elses-model" not in set(fast["model"])
    assert set(fast["model"]) == {"pumps-detector", "valves-detector", "empty_stream-detector"}


def test_a_new_store_is_at_a_known_revision(tmp_path):
    """The revision the pinned MLflow creates: a new MLflow release fails here until its
    store layout is checked against the client again (the test above)."""
    registry.ensure_store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with sqlite3.connect(tmp_path / "mlflow.db") as con:
        assert {r[0] for r in con.execute("SELECT version_num FROM alembic_version")} <= KNOWN_REVISIONS


def test_other_stores_are_left_to_the_client(store, tmp_path, monkeypatch):
    path, _ = store
    copy = tmp_path / "other.db"
    shutil.copy(path, copy)
    with sqlite3.connect(copy) as con:
        con.execute("UPDATE alembic_version SET version_num = 'f00000000000'")
    assert read_registered_models(f"sqlite:///{copy}", "-detector") is None
    assert read_registered_models("http://127.0.0.1:5000", "-detector") is None
    assert read_registered_models(f"sqlite:///{tmp_path / 'none.db'}", "-detector") == []
    monkeypatch.setenv("MLFLOW_WORKSPACE", "plant-2")
    assert read_registered_models(f"sqlite:///{path}", "-detector") is None

"""The model registry of a SQLite MLflow store, read with sqlite3 for `aemon models list`.

MLflow's Python client takes ~1 s to import here (more than the listing itself takes),
so the one command a user runs to see "what is the champion" reads MLflow's registry
tables directly, read-only, and only at a schema revision this release was built and tested
with (`KNOWN_REVISIONS`, checked by the test that compares it with the client's answer).
Any other store (a tracking server, another revision, a workspace other than the default)
returns None and the caller asks MLflow's client.
"""
from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

# The alembic revision of the tracking store that mlflow==3.17.2 creates and migrates to.
KNOWN_REVISIONS = frozenset({"dc11669786a5"})
DEFAULT_WORKSPACE = "default"
# MLflow marks a deleted model version with this stage until it removes it; its searches skip them.
DELETED_STAGE = "Deleted_Internal"


@dataclass(frozen=True)
class RegisteredModelRow:
    name: str
    versions: int
    aliases: dict[str, int]
    tags: dict[str, str]


def sqlite_store_path(tracking_uri: str) -> Path | None:
    """The file of a `sqlite:///` tracking URI, or None for any other store."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return Path(tracking_uri.removeprefix("sqlite:///"))


def read_registered_models(tracking_uri: str, suffix: str) -> list[RegisteredModelRow] | None:
    """Every registered model whose name ends with `suffix`: its number of versions, aliases
    and tags, as MLflow's search_registered_models / search_model_versions give them; None
    when the store is not a SQLite file of a known revision in the default workspace (ask
    MLflow's client), [] when the file does not exist yet."""
    path = sqlite_store_path(tracking_uri)
    if path is None or os.environ.get("MLFLOW_WORKSPACE", DEFAULT_WORKSPACE) != DEFAULT_WORKSPACE:
        return None
    if not path.exists():
        return []
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error:
        return None
    try:
        revision = con.execute("SELECT version_num FROM alembic_version").fetchall()
        if {r[0] for r in revision} - KNOWN_REVISIONS or not revision:
            return None
        pattern = "%" + suffix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        names = [r[0] for r in con.execute(
            "SELECT name FROM registered_models WHERE workspace = ? AND name LIKE ? ESCAPE '\\' ORDER BY name",
            (DEFAULT_WORKSPACE, pattern))]
        rows = []
        for name in names:
            (versions,) = con.execute(
                "SELECT count(*) FROM model_versions WHERE workspace = ? AND name = ? AND "
                "coalesce(current_stage, '') <> ?", (DEFAULT_WORKSPACE, name, DELETED_STAGE)).fetchone()
            aliases = dict(con.execute(
                "SELECT alias, version FROM registered_model_aliases WHERE workspace = ? AND name = ?",
                (DEFAULT_WORKSPACE, name)).fetchall())
            tags = dict(con.execute(
                "SELECT key, value FROM registered_model_tags WHERE workspace = ? AND name = ?",
                (DEFAULT_WORKSPACE, name)).fetchall())
            rows.append(RegisteredModelRow(name, int(versions), {str(k): int(v) for k, v in aliases.items()},
                                           {str(k): str(v) for k, v in tags.items()}))
        return rows
    except sqlite3.Error:  # a table of another layout, a locked or damaged file: the client decides
        return None
    finally:
        con.close()

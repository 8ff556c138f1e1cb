"""The names aemon gives things in the model registry, and the `models list` table, without
importing MLflow (monitoring.models.registry does; this module is what commands that only
read the registry need)."""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING

from monitoring.store.mlflow_tables import RegisteredModelRow, read_registered_models

if TYPE_CHECKING:
    import pandas as pd

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "champion_history"
MODEL_SUFFIX = "-detector"
LIST_COLUMNS = ["model", "versions", "champion", "challenger", "champion_history"]


def model_name(stream: str) -> str:
    return f"{stream}{MODEL_SUFFIX}"


def models_table(models: Iterable[RegisteredModelRow]) -> pd.DataFrame:
    """One row per registered aemon model: name, number of versions, champion, challenger
    and the champion history (its versions in the order they became champion)."""
    import pandas as pd

    rows = [{"model": m.name, "versions": m.versions, "champion": m.aliases.get(CHAMPION, ""),
             "challenger": m.aliases.get(CHALLENGER, ""),
             "champion_history": " ".join(str(v) for v in json.loads(m.tags.get(HISTORY_TAG, "[]")))}
            for m in models if m.name.endswith(MODEL_SUFFIX)]
    return pd.DataFrame(rows, columns=LIST_COLUMNS)


def list_models_from_store(tracking_uri: str) -> pd.DataFrame | None:
    """models_table read straight from a SQLite tracking store (monitoring.store.mlflow_tables),
    or None where only MLflow's client can answer (registry.list_models)."""
    rows = read_registered_models(tracking_uri, MODEL_SUFFIX)
    return None if rows is None else models_table(rows)

"""Credentials from Prefect Secret blocks: the `[secrets]` table of aemon.toml maps the
environment variables aemon's clients read to the names of Prefect `Secret` blocks:

    [secrets]
    AWS_ACCESS_KEY_ID = "aemon-s3-key-id"
    AWS_SECRET_ACCESS_KEY = "aemon-s3-secret-key"
    PGPASSWORD = "aemon-postgres-password"

Each block is read once per process, when a command or a flow run loads its configuration,
and its value put into the process's environment under that name: libpq, psycopg2 and
asyncpg read PGPASSWORD there, s3fs, boto3 and the warehouse's DuckDB secret the AWS_*
variables, MLflow its MLFLOW_TRACKING_* ones, so no client is configured twice and no value
passes through a URI, a parameter or a message. A configured block wins over a variable
already set. With no `[secrets]` table nothing here runs: no Prefect import, no API call
(`aemon sql` stays a fraction of a second).

Reading a block needs the Prefect API the flows use (PREFECT_API_URL); without one, Prefect's
temporary local API is started for it, which takes seconds.
"""
from __future__ import annotations

import os
import re
import threading
from typing import Any

from flows.locations import ConfigError

# The variables aemon's clients read credentials from (see the module docstring).
SECRET_VARIABLES = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "PGPASSWORD",
    "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
    "AEMON_WEBHOOK_SECRET",
)
BLOCK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")  # Prefect's rule for block names: lowercase, digits, '-'

_APPLIED: dict[str, str] = {}  # variable -> block already read into this process's environment
_GUARD = threading.Lock()


def check_secrets(table: Any, where: str) -> dict[str, str]:
    """The `[secrets]` table as {variable: block name}, or one ConfigError naming the setting."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: secrets: expected a table of VARIABLE = \"secret-block-name\"")
    for variable, block in table.items():
        if variable not in SECRET_VARIABLES:
            raise ConfigError(f"{where}: secrets.{variable}: not a variable aemon reads credentials from; "
                              f"expected one of {list(SECRET_VARIABLES)}")
        if not isinstance(block, str) or not BLOCK_NAME.fullmatch(block):
            raise ConfigError(f"{where}: secrets.{variable}: {block!r} is not a Secret block name; expected "
                              "lowercase letters, digits and '-' (the name given to Secret(...).save)")
    return dict(table)


def apply_secrets(secrets: dict[str, str]) -> None:
    """Read each configured Secret block (once per process) into the environment variable it
    is configured for. A block that does not exist, or an API that cannot be reached, is one
    ConfigError naming the setting and the block; the value is never part of a message."""
    if not secrets:
        return
    with _GUARD:
        for variable, block in secrets.items():
            if _APPLIED.get(variable) == block:
                continue
            os.environ[variable] = _read_block(variable, block)
            _APPLIED[variable] = block


def _read_block(variable: str, block: str) -> str:
    from prefect.blocks.system import Secret

    try:
        loaded = Secret.load(block)  # a Secret when called outside an event loop
        value = loaded.get()  # type: ignore[union-attr]
    except ValueError as exc:
        if "Unable to find block document" in str(exc):
            raise ConfigError(f"secrets.{variable}: no Prefect Secret block named {block!r}; create it with "
                              f"Secret(value=...).save({block!r}) or in the Prefect UI (Blocks)") from None
        raise ConfigError(f"secrets.{variable}: cannot read the Secret block {block!r} ({type(exc).__name__})"
                          ) from None
    except Exception as exc:  # an unreachable or refusing API: httpx, Prefect's client errors
        raise ConfigError(f"secrets.{variable}: cannot read the Secret block {block!r} from the Prefect API "
                          f"({type(exc).__name__}); is PREFECT_API_URL right and the server up?") from None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"secrets.{variable}: the Secret block {block!r} holds "
                          f"{'nothing' if not value else type(value).__name__}; expected text")
    return value


def forget_applied() -> None:
    """Read the blocks again at the next apply_secrets (tests)."""
    with _GUARD:
        _APPLIED.clear()

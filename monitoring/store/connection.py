"""The warehouse: a DuckLake catalog (a SQLite file by default, PostgreSQL beyond one machine)
with its Parquet data files, and the connections, transactions and name checks around it.

Why DuckLake: a DuckDB file admits one writing process and no other process while one
writes, so a notebook left open stopped every scheduled flow. DuckLake keeps the tables'
metadata in a catalog database and their rows in Parquet files: any number of readers
and writers, each query on one committed snapshot, multi-table transactions.

Readers attach the catalog read-only and never wait. Writers take the write lock (a file
lock next to a SQLite catalog: SQLite admits one writer, and a writer whose transaction
began before another's commit can only fail; a PostgreSQL advisory lock on a PostgreSQL
catalog: every write adds only what is missing, which two concurrent writes would both
add) and retry a transaction that still meets a conflict, so a write either commits whole
or leaves nothing. Data files may live on S3 (`s3://bucket/prefix`), with the credentials
taken from the environment into an in-memory DuckDB secret. The extensions are loaded
from the files the `duckdb-extension-*` packages ship: nothing is downloaded.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from monitoring.errors import WarehouseError
from monitoring.store.redaction import redact
from monitoring.store.schema import TABLES, ensure_schema

IDENTIFIER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,127}$")
CATALOG_ALIAS = "aemon"
LEGACY_FILE = "warehouse.duckdb"  # the single-file warehouse of earlier releases

T = TypeVar("T")


@dataclass(frozen=True)
class Warehouse:
    """Where the warehouse lives. `catalog`: `sqlite:<path>` (the embedded default) or
    `postgres:<libpq connection string>`; `data_path`: the folder (or object-store URI) of
    its Parquet files. `legacy`: a single-file warehouse of an earlier release that this one
    replaces (upgraded by `aemon warehouse upgrade`)."""

    catalog: str
    data_path: str
    legacy: Path | None = None
    retries: int = 8
    lock_timeout_s: float = 300.0  # longest wait for another process's write (then a WarehouseError)

    @classmethod
    def at(cls, home: str | Path) -> Warehouse:
        """The embedded default under a home folder: warehouse.sqlite + warehouse/."""
        home = Path(home).resolve()
        return cls(f"sqlite:{home / 'warehouse.sqlite'}", str(home / "warehouse"), home / LEGACY_FILE)

    def __post_init__(self):
        kind = self.catalog.split(":", 1)[0]
        if kind not in ("sqlite", "postgres") or ":" not in self.catalog:
            raise WarehouseError(redact(f"warehouse catalog {self.catalog!r}: expected 'sqlite:<path>' or "
                                        "'postgres:<connection string>'"))
        check_data_path(self.data_path)

    @property
    def kind(self) -> str:
        return self.catalog.split(":", 1)[0]

    @property
    def sqlite_path(self) -> Path | None:
        return Path(self.catalog.split(":", 1)[1]) if self.kind == "sqlite" else None

    def exists(self) -> bool:
        """Whether the catalog has been created (always assumed for a server catalog)."""
        path = self.sqlite_path
        return path is None or path.exists()

    def attach_sql(self, *, read_only: bool = True, alias: str = CATALOG_ALIAS) -> str:
        """The ATTACH statement a DuckDB client runs to read (or write) this warehouse."""
        options = []
        if not read_only:
            options.append(f"DATA_PATH {literal(self.data_path.rstrip('/') + '/')}")
        if self.kind == "sqlite":
            # WAL: readers never wait for a writer; the busy timeout rides out a commit in progress
            options += ["META_JOURNAL_MODE 'WAL'", "META_BUSY_TIMEOUT 10000"]
        if read_only:
            options.append("READ_ONLY")
        return f"ATTACH {literal('ducklake:' + self.catalog)} AS {alias} ({', '.join(options)})"

    def extensions(self) -> list[str]:
        names = ["ducklake", "sqlite_scanner" if self.kind == "sqlite" else "postgres_scanner"]
        if is_uri(self.data_path):
            names.append("httpfs")
        return names


OBJECT_STORES = ("s3",)  # URI schemes of data paths on an object store


def is_uri(data_path: str) -> bool:
    """Whether a data path is an object-store URI (not a local folder)."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", data_path) is not None


def check_data_path(data_path: str) -> None:
    """A local folder or `s3://bucket[/prefix]`; anything else is one WarehouseError."""
    if not is_uri(data_path):
        if not data_path.strip():
            raise WarehouseError("warehouse data_path is empty; expected a folder or s3://bucket/prefix")
        return
    scheme, rest = data_path.split("://", 1)
    if scheme.lower() not in OBJECT_STORES:
        raise WarehouseError(redact(f"warehouse data_path {data_path!r}: the scheme {scheme!r} is not supported; "
                                    "expected a folder or s3://bucket/prefix"))
    bucket = rest.split("/", 1)[0]
    if "@" in bucket:
        raise WarehouseError(redact(f"warehouse data_path {data_path!r}: expected s3://bucket/prefix without "
                                    "credentials; credentials come from the environment, never the URI "
                                    f"({', '.join(S3_KEY_ENV)})"))
    if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", bucket):
        raise WarehouseError(f"warehouse data_path {data_path!r}: {bucket!r} is not a bucket name; "
                             "expected s3://bucket/prefix")


S3_KEY_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def require_s3_credentials(environ: Any = None) -> None:
    """The S3 keys are in the environment, or one WarehouseError naming those missing."""
    env = os.environ if environ is None else environ
    missing = [name for name in S3_KEY_ENV if not env.get(name)]
    if missing:
        raise WarehouseError(f"the warehouse data path is on S3 but {' and '.join(missing)} "
                             f"{'is' if len(missing) == 1 else 'are'} not set; set both in the environment")


def s3_secret_sql(environ: Any = None) -> str:
    """The DuckDB secret for data files on S3, from the environment (the variables boto3, s3fs
    and the AWS CLI read): AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, optionally AWS_SESSION_TOKEN,
    AWS_REGION / AWS_DEFAULT_REGION and AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL (an S3-compatible
    store: `http://host:port`). The statement holds the secret: run it, never log it."""
    env = os.environ if environ is None else environ
    require_s3_credentials(env)
    options = ["TYPE s3", f"KEY_ID {literal(env['AWS_ACCESS_KEY_ID'])}",
               f"SECRET {literal(env['AWS_SECRET_ACCESS_KEY'])}"]
    if env.get("AWS_SESSION_TOKEN"):
        options.append(f"SESSION_TOKEN {literal(env['AWS_SESSION_TOKEN'])}")
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        options.append(f"REGION {literal(region)}")
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        match = re.fullmatch(r"(https?)://([^/@\s]+)/?", endpoint.strip())
        if match is None:
            raise WarehouseError(f"AWS_ENDPOINT_URL {endpoint!r}: expected http(s)://host[:port]")
        options += [f"ENDPOINT {literal(match[2])}", "URL_STYLE 'path'",
                    f"USE_SSL {'true' if match[1] == 'https' else 'false'}"]
    return f"CREATE OR REPLACE SECRET aemon_s3 ({', '.join(options)})"


def _create_s3_secret(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.execute(s3_secret_sql())
    except duckdb.Error:  # the message could quote the statement, and with it the key
        raise WarehouseError("cannot create the DuckDB secret for the S3 data path from AWS_ACCESS_KEY_ID, "
                             "AWS_SECRET_ACCESS_KEY and AWS_ENDPOINT_URL") from None


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def extension_file(name: str) -> Path:
    """The extension file a `duckdb-extension-<name>` package ships (for this DuckDB version)."""
    package = f"duckdb_extension_{name}"
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WarehouseError(f"DuckDB extension {name!r} is not installed: pip install "
                             f"duckdb-extension-{name.replace('_', '-')}=={duckdb.__version__}")
    root = Path(next(iter(spec.submodule_search_locations)))
    wanted = root / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not wanted.exists():
        found = sorted(p.parent.name for p in root.glob("extensions/*/*.duckdb_extension"))
        raise WarehouseError(f"DuckDB extension {name!r} ships for {found}, not for DuckDB v{duckdb.__version__}; "
                             f"install duckdb-extension-{name.replace('_', '-')}=={duckdb.__version__}")
    return wanted


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> Any:
    """The single value of a query. Fetches the whole result: DuckDB refuses further work
    on a connection while a result is only partly fetched."""
    return con.execute(sql, params or []).fetchall()[0][0]


def quote_identifier(name: str) -> str:
    """Validate a stream or column name and quote it for SQL."""
    if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):  # fullmatch: "$" would let "x\n" through
        raise WarehouseError(
            f"identifier {name!r} is not allowed; expected letters, digits, '_' or '-' (max 128, not starting with '-')"
        )
    return '"' + name + '"'


def view_name(stream: str) -> str:
    """The qualified name of a stream's readings table: lake."<stream>"."""
    return f"lake.{quote_identifier(stream)}"


def _refuse_legacy(warehouse: Warehouse) -> None:
    if warehouse.legacy is not None and warehouse.legacy.exists():  # renamed once upgraded
        raise WarehouseError(
            f"{warehouse.legacy} is a warehouse of an earlier release; run `aemon warehouse upgrade` to move it "
            f"into the DuckLake catalog ({warehouse.catalog})")


def _open(warehouse: Warehouse, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    _refuse_legacy(warehouse)
    con = duckdb.connect(config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"})
    try:
        for name in warehouse.extensions():
            con.execute(f"LOAD {literal(str(extension_file(name)))}")
        if is_uri(warehouse.data_path):
            _create_s3_secret(con)
        if warehouse.sqlite_path is not None:
            warehouse.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        if not is_uri(warehouse.data_path):
            Path(warehouse.data_path).mkdir(parents=True, exist_ok=True)
        con.execute(warehouse.attach_sql(read_only=read_only))
        con.execute(f"USE {CATALOG_ALIAS}")
    except duckdb.Error as exc:
        con.close()
        raise WarehouseError(redact(f"cannot open the warehouse catalog {warehouse.catalog}: {_first_line(exc)}")
                             ) from None
    except BaseException:
        con.close()
        raise
    return con


_THREAD_LOCKS: dict[Path, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


@contextmanager
def write_lock(warehouse: Warehouse) -> Iterator[None]:
    """One writer at a time: on a SQLite catalog an exclusive lock on `<catalog>.lock`, on
    PostgreSQL an advisory lock of the catalog's database (every machine's writers share
    it), taken by writers only (readers never wait). Every write checks what is stored and
    adds what is missing (`insert_missing`); two such transactions at once would each miss
    the other's rows and both commit (DuckLake lets concurrent appends through), so writes
    take turns.

    A writer waits at most `warehouse.lock_timeout_s` (polling with backoff, so a run that
    hangs while it writes cannot stop every other flow for ever), then gets a WarehouseError
    naming the process that holds the lock; the holder writes its pid into the lock file.
    A process that dies (even by kill -9) releases its lock with its file descriptors."""
    path = warehouse.sqlite_path
    if path is None:
        with _advisory_lock(warehouse, WRITE_LOCK_KEY, "writing the warehouse"):
            yield
        return
    lock_path = path.with_name(path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with _THREAD_LOCKS_GUARD:
        local = _THREAD_LOCKS.setdefault(lock_path, threading.Lock())
    deadline = time.monotonic() + warehouse.lock_timeout_s
    if not local.acquire(timeout=max(0.0, warehouse.lock_timeout_s)):
        raise _lock_timeout(warehouse, lock_path, "another thread of this process")
    try:
        with open(lock_path, "a+b") as handle:
            try:
                import fcntl
            except ImportError:  # no flock (Windows): conflicting commits are retried instead
                yield
                return
            _flock_until(handle, deadline, warehouse, lock_path)
            try:
                handle.truncate(0)
                handle.write(f"{os.getpid()}\n".encode())
                handle.flush()
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        local.release()


SETUP_LOCK_KEY = 0x61656D6F6E  # "aemon": PostgreSQL advisory lock of catalog creation and migration
WRITE_LOCK_KEY = SETUP_LOCK_KEY + 1  # and of writes


@contextmanager
def setup_lock(warehouse: Warehouse) -> Iterator[None]:
    """One process at a time creates or migrates the catalog: on SQLite the write lock, on
    PostgreSQL an advisory lock (DuckLake creates its metadata tables on the first ATTACH,
    and two processes creating them at once collide: `duplicate key value violates unique
    constraint "pg_type_typname_nsp_index"`)."""
    if warehouse.kind != "postgres":
        with write_lock(warehouse):
            yield
        return
    with _advisory_lock(warehouse, SETUP_LOCK_KEY, "creating or upgrading the warehouse catalog"):
        yield


@contextmanager
def _advisory_lock(warehouse: Warehouse, key: int, doing: str) -> Iterator[None]:
    """A PostgreSQL advisory lock of the catalog's database, held by a connection of its
    own: a process killed while it holds the lock releases it with the connection."""
    import psycopg2
    from psycopg2 import errors as pg_errors

    try:
        con = psycopg2.connect(warehouse.catalog.split(":", 1)[1], connect_timeout=10)
    except psycopg2.Error as exc:
        raise WarehouseError(redact(f"cannot open the warehouse catalog {warehouse.catalog}: {_first_line(exc)}")
                             ) from None
    try:
        con.autocommit = True
        with con.cursor() as cursor:
            cursor.execute("SET lock_timeout = %s", [f"{int(warehouse.lock_timeout_s * 1000)}ms"])
            try:
                cursor.execute("SELECT pg_advisory_lock(%s)", [key])
            except pg_errors.LockNotAvailable:
                raise WarehouseError(
                    f"another process was {doing} and did not finish within {warehouse.lock_timeout_s:g} s "
                    "(warehouse.lock_timeout_s); try again when that run has ended") from None
        yield
    finally:
        con.close()


def _flock_until(handle: Any, deadline: float, warehouse: Warehouse, lock_path: Path) -> None:
    import fcntl

    pause = 0.005
    while True:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.seek(0)
                holder = handle.read().decode(errors="replace").strip()
                raise _lock_timeout(warehouse, lock_path, f"process {holder}" if holder else "another process"
                                    ) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.5)


def _lock_timeout(warehouse: Warehouse, lock_path: Path, holder: str) -> WarehouseError:
    return WarehouseError(
        f"the warehouse is being written by {holder} (lock {lock_path}) and was not free within "
        f"{warehouse.lock_timeout_s:g} s (warehouse.lock_timeout_s); try again when that run has ended")


class _Instance:
    """A DuckDB database in this process with the extensions loaded and the catalog attached:
    loading the extensions costs ~0.15 s, so each connection is a cursor on one of these."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con
        self.users = 0
        self.ready = False  # the catalog is at SCHEMA_VERSION


_INSTANCES: dict[tuple[str, str], _Instance] = {}
_INSTANCES_GUARD = threading.Lock()
_MAX_IDLE_INSTANCES = 4


def _instance(warehouse: Warehouse) -> _Instance:
    key = (warehouse.catalog, warehouse.data_path)
    with _INSTANCES_GUARD:
        instance = _INSTANCES.get(key)
        if instance is None:
            if warehouse.kind == "sqlite" and _sqlite_catalog_created(warehouse):
                try:
                    instance = _Instance(_open(warehouse, read_only=False))
                except WarehouseError:  # a catalog that met another process's write: after it
                    with setup_lock(warehouse):
                        instance = _Instance(_open_waiting(warehouse))
            else:  # the first process to open a new catalog creates it, alone
                with setup_lock(warehouse):
                    instance = _Instance(_open_waiting(warehouse))
            _INSTANCES[key] = instance
            idle = [k for k, i in _INSTANCES.items() if i.users == 0 and k != key]
            for old in idle[:max(0, len(idle) - _MAX_IDLE_INSTANCES)]:
                _INSTANCES.pop(old).con.close()
        instance.users += 1
        return instance


def _sqlite_catalog_created(warehouse: Warehouse) -> bool:
    """Whether the SQLite catalog holds DuckLake's tables: a process that opens it while
    another creates them (the file exists from the creator's first statement on) would
    try to create them too, so until they are committed it opens under the setup lock."""
    import sqlite3

    path = warehouse.sqlite_path
    if path is None or not path.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=1.0)) as db:
            return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ducklake_metadata'"
                              ).fetchone() is not None
    except sqlite3.Error:  # busy or unreadable: the setup lock's path decides, and says what is wrong
        return False


def _open_waiting(warehouse: Warehouse) -> duckdb.DuckDBPyConnection:
    """_open for writing, retried while the catalog is busy. DuckLake creates and probes its
    SQLite catalog before its META_BUSY_TIMEOUT applies: measured, an ATTACH of a catalog
    file another connection is writing fails at once with `database is locked` (the setup
    lock keeps out this release's processes, not every connection to the file)."""
    deadline = time.monotonic() + min(warehouse.lock_timeout_s, 30.0)
    pause = 0.01
    while True:
        try:
            return _open(warehouse, read_only=False)
        except WarehouseError as exc:
            if not is_transient(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


def close_all() -> None:
    """Close this process's warehouse databases (tests; a process's exit does the same)."""
    with _INSTANCES_GUARD:
        for key in [k for k, i in _INSTANCES.items() if i.users == 0]:
            _INSTANCES.pop(key).con.close()


@contextmanager
def connect(warehouse: Warehouse, *, write: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the warehouse (a cursor of this process's database for it), closed
    on exit. Reading connections never wait. A writing one (`write`) holds the write lock
    until it closes, so keep it short and put its writes in `transaction` (or use `write`,
    which also retries). Tables are created or migrated by the first connection to a
    catalog behind the schema version."""
    _refuse_legacy(warehouse)
    instance = _instance(warehouse)
    try:
        if not instance.ready:  # the schema under the lock, then read (or write) as usual
            with setup_lock(warehouse):
                if not instance.ready:
                    _prepare(instance)
        with write_lock(warehouse) if write else contextlib.nullcontext():
            cursor = instance.con.cursor()
            try:
                cursor.execute(f"USE {CATALOG_ALIAS}")
                yield cursor
            finally:
                cursor.close()
    finally:
        with _INSTANCES_GUARD:
            instance.users -= 1


def _prepare(instance: _Instance) -> None:
    """Bring the catalog to the schema version (once per process and warehouse); the caller
    holds the write lock."""
    cursor = instance.con.cursor()
    try:
        cursor.execute(f"USE {CATALOG_ALIAS}")
        ensure_schema(cursor)
        instance.ready = True
    finally:
        cursor.close()


_IN_TRANSACTION: set[int] = set()


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """One transaction around the block: committed when it ends normally, rolled back on any
    error (the error itself goes on unchanged), so a failed write leaves nothing half done.
    Inside another transaction of the same connection it joins that one."""
    if id(con) in _IN_TRANSACTION:
        yield
        return
    con.execute("BEGIN TRANSACTION")
    _IN_TRANSACTION.add(id(con))
    committed = False
    try:
        yield
        con.execute("COMMIT")
        committed = True
    finally:
        _IN_TRANSACTION.discard(id(con))
        if not committed:
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")


# Messages of a commit that met another writer's (DuckLake conflict, a busy SQLite catalog,
# a PostgreSQL serialization failure): the whole transaction can be run again.
_TRANSIENT = ("conflict", "database is locked", "failed to commit", "could not serialize", "deadlock")


def is_transient(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, duckdb.Error | WarehouseError) and any(t in text for t in _TRANSIENT)


def write(warehouse: Warehouse, work: Callable[[duckdb.DuckDBPyConnection], T], *,
          con: duckdb.DuckDBPyConnection | None = None) -> T:
    """Run `work(con)` in one write transaction: all of it commits, or none of it. A commit
    that meets another writer's is retried with bounded exponential backoff (50 ms doubling
    to 2 s, `warehouse.retries` times), so `work` must be idempotent (every aemon write is);
    a conflict that persists ends in one WarehouseError saying so. `con`: a connection of
    this warehouse the caller holds (from `connect`, out of any transaction), used under
    the write lock instead of a new one: a run that read through it writes through it."""
    started = time.monotonic()
    for attempt in range(warehouse.retries + 1):
        try:
            with _writing(warehouse, con) as cursor, transaction(cursor):
                return work(cursor)
        except (duckdb.Error, WarehouseError) as exc:
            if not is_transient(exc):
                raise
            if attempt == warehouse.retries:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise WarehouseError(
                    f"a write to the warehouse {warehouse.catalog} met another writer's {attempt + 1} times in "
                    f"{time.monotonic() - started:.1f} s and was given up (warehouse.retries = {warehouse.retries}):"
                    f" {first}") from exc
            time.sleep(min(0.05 * 2 ** attempt, 2.0))
    raise AssertionError("unreachable")


@contextmanager
def _writing(warehouse: Warehouse, con: duckdb.DuckDBPyConnection | None) -> Iterator[duckdb.DuckDBPyConnection]:
    if con is None:
        with connect(warehouse, write=True) as cursor:
            yield cursor
    else:
        with write_lock(warehouse):
            yield con


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return scalar(con, f"SELECT count(*) FROM {quote_identifier(table)}")


def table_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {name: _count(con, name) for name in TABLES}


def query_rows(warehouse: Warehouse, sql: str, params: list | None = None) -> tuple[list[str], list[tuple]]:
    """Run one read-only query against the warehouse (users' SQL): (column names, rows).
    The catalog is attached read-only, so the query cannot write, and it reads the latest
    committed snapshot: flows writing meanwhile neither wait for it nor show half a run."""
    _refuse_legacy(warehouse)  # an earlier release's home: say so, not "no warehouse"
    if not warehouse.exists():
        raise WarehouseError(redact(f"no warehouse at {warehouse.catalog}; run `aemon ingest STREAM` or `aemon demo` "
                                    "first"))
    con = _open(warehouse, read_only=True)
    try:
        _only_reads(con, warehouse, sql)
        result = con.execute(sql, params) if params else con.execute(sql)
        columns = [d[0] for d in result.description or []]
        return columns, result.fetchall()
    except duckdb.Error as exc:
        raise WarehouseError(f"query failed: {_first_line(exc)}") from exc
    finally:
        con.close()


def _first_line(exc: Exception) -> str:
    """DuckDB's message without the query excerpt and caret it adds on further lines."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


READ_STATEMENTS = (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN)


def _only_reads(con: duckdb.DuckDBPyConnection, warehouse: Warehouse, sql: str) -> None:
    """Users' SQL reads and nothing else: only SELECT-like statements (a second ATTACH of
    the catalog could write it; COPY could write any file) and, on a local warehouse (SQLite
    catalog, data files in a folder), no file outside its data path (`read_text('/etc/...')`),
    with the settings locked so the query cannot undo that. A PostgreSQL catalog or
    object-store data keep DuckDB's external access: their connections may need it."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise WarehouseError(f"query failed: {_first_line(exc)}") from exc
    for statement in statements:
        if statement.type not in READ_STATEMENTS:
            raise WarehouseError(f"query failed: {statement.type.name} statements are not allowed; `aemon sql` "
                                 "runs read-only queries (SELECT, DESCRIBE, SHOW, EXPLAIN)")
    if warehouse.sqlite_path is not None and not is_uri(warehouse.data_path):
        # a quoted literal, not a parameter: DuckDB imports pandas (0.3 s) for the first
        # parameter of a process, and `aemon sql` starts in a fraction of a second without it
        con.execute(f"SET allowed_directories = [{literal(warehouse.data_path.rstrip('/') + '/')}]")
        con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def query(warehouse: Warehouse, sql: str, params: list | None = None):
    """query_rows as a pandas frame."""
    import pandas as pd

    columns, rows = query_rows(warehouse, sql, params)
    return pd.DataFrame.from_records(rows, columns=columns)


def insert_missing(con: duckdb.DuckDBPyConnection, table: str, source: str, columns: list[str],
                   keys: tuple[str, ...], select: dict[str, str] | None = None, params: list | None = None,
                   since: tuple[str, Any] | None = None) -> int:
    """INSERT the rows of `source` (a registered frame or a subquery) whose key is not in
    `table` yet; returns the rows inserted. DuckLake has no primary keys, so this anti-join
    is what keeps every write idempotent. `select`: an expression per column (default: the
    source's column of that name); `params`: the parameters of `source`. `since`: (a key
    column, its least value in `source`): the lookup reads only the table's rows from there
    on, so DuckLake skips the files of older history and a write's cost does not grow with it."""
    select = select or {}
    listed = ", ".join(quote_identifier(c) for c in columns)
    values = ", ".join(select.get(c, f"n.{quote_identifier(c)}") for c in columns)
    key_source = {c: select.get(c, f"n.{quote_identifier(c)}") for c in keys}
    same = " AND ".join(f"t.{quote_identifier(k)} = {key_source[k]}" for k in keys)
    params = list(params or [])
    if since is not None:
        if since[0] not in keys:
            raise WarehouseError(f"insert_missing: since={since[0]!r} is not a key of {table} {keys}")
        same += f" AND t.{quote_identifier(since[0])} >= ?"
        params.append(since[1])
    return int(scalar(con, f"INSERT INTO {quote_identifier(table)} ({listed}) SELECT {values} FROM {source} n "
                           f"WHERE NOT EXISTS (SELECT 1 FROM {quote_identifier(table)} t WHERE {same})", params))


def client_sql(warehouse: Warehouse, *, offline: bool = True) -> list[str]:
    """The statements any DuckDB client (CLI, Python, a BI tool) runs to read the warehouse:
    load the extensions (from the files installed with aemon when `offline`, else from
    DuckDB's repository), attach the catalog read-only, use it."""
    if offline:
        loads = [f"LOAD {literal(str(extension_file(name)))}" for name in warehouse.extensions()]
    else:
        loads = [f"INSTALL {name}; LOAD {name}" for name in warehouse.extensions()]
    return [*loads, warehouse.attach_sql(read_only=True), f"USE {CATALOG_ALIAS}"]

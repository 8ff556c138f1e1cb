"""The one-way dependency rule of the design, checked on the source.

Packages: features and aemodels are leaves, monitoring may use them, flows composes
everything, and nothing imports flows (bench/ included). Inside monitoring, the wings:
store/ (lake, ingest, the warehouse's tables; all SQL) uses no other wing; models/
(bundle, fitting, gate, registry, promotion, plots) may use the store but never
evaluation/; alerting/ (scoring, incidents) may use store and models; evaluation/
(metrics, labeled evaluation, benchmarks) may use them all. Relative imports count.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"features", "aemodels", "monitoring", "flows"}
THIRD_PARTY = {
    "features": {"numpy", "pandas", "pyarrow", "scipy"},
    "aemodels": {"torch", "numpy", "scipy"},
    # psycopg2 (writer locks on a PostgreSQL catalog), fsspec and botocore (lake files on an
    # object store): the store's engines beyond one machine
    "monitoring": {"duckdb", "mlflow", "pandas", "numpy", "pyarrow", "matplotlib", "psycopg2", "fsspec", "botocore"},
    "flows": None,  # the composition layer may use anything installed
    "bench": None,
}
MAY_IMPORT = {
    "features": {"features"},
    "aemodels": {"aemodels"},
    "monitoring": {"monitoring", "features", "aemodels"},
    "flows": OURS,
    "bench": {"features", "aemodels", "monitoring"},
}
WINGS = ("store", "models", "alerting", "evaluation")
# the wings (and the shared monitoring.errors) each wing may import
WING_MAY_IMPORT = {
    "store": {"store"},
    "models": {"models", "store"},
    "alerting": {"alerting", "store", "models"},
    "evaluation": {"evaluation", "store", "models", "alerting"},
}


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Dotted names of the modules a file imports, relative imports resolved against its
    package (`from . import lake` in monitoring/store/ingestion.py is monitoring.store.lake)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = list(path.relative_to(root).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            # `from monitoring.store import lake` imports the module monitoring.store.lake
            found |= {f"{module}.{alias.name}" if module else alias.name for alias in node.names}
            found.add(module)
    return {name for name in found if name}


def imported_roots(path: Path, root: Path = ROOT) -> set[str]:
    return {name.split(".")[0] for name in imported_modules(path, root)}


def package_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted([*OURS, "bench"]))
def test_package_imports_follow_the_dependency_rule(package):
    assert package_files(package), f"{package} has no modules"
    problems = []
    for path in package_files(package):
        for root in imported_roots(path):
            if root in OURS and root not in MAY_IMPORT[package]:
                problems.append(f"{path.relative_to(ROOT)} imports {root}")
            elif root not in OURS and root not in sys.stdlib_module_names and root != "__future__":
                allowed = THIRD_PARTY[package]
                if allowed is not None and root not in allowed:
                    problems.append(f"{path.relative_to(ROOT)} imports third-party {root}")
    assert not problems, "\n".join(problems)


def wing_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "monitoring" and parts[1] in WINGS else None


def test_monitoring_is_in_wings_named_by_their_job():
    top = sorted(p.name for p in (ROOT / "monitoring").iterdir() if p.suffix == ".py")
    assert top == ["__init__.py", "errors.py"], f"modules outside a wing: {top}"
    for wing in WINGS:
        assert (ROOT / "monitoring" / wing / "__init__.py").exists(), wing


@pytest.mark.parametrize("wing", WINGS)
def test_wings_import_only_the_wings_below_them(wing):
    problems = []
    for path in sorted((ROOT / "monitoring" / wing).rglob("*.py")):
        for module in imported_modules(path):
            other = wing_of(module)
            if other is not None and other not in WING_MAY_IMPORT[wing]:
                problems.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not problems, "\n".join(problems)


def sql_calls(path: Path) -> list[int]:
    """Lines of a file that run SQL on a DuckDB connection (`.execute(`, `.sql(`, `.query(`)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("execute", "executemany", "sql", "query")]


def test_no_sql_outside_the_store_wing():
    store = ROOT / "monitoring" / "store"
    problems = []
    for package in [*sorted(OURS), "bench"]:
        for path in package_files(package):
            if store in path.parents:
                continue
            problems += [f"{path.relative_to(ROOT)}:{line}" for line in sql_calls(path)]
    assert not problems, "SQL outside monitoring/store:\n" + "\n".join(problems)


def test_the_checker_catches_violations(tmp_path):
    folder = tmp_path / "monitoring" / "store"
    folder.mkdir(parents=True)
    bad = folder / "bad.py"
    bad.write_text("import duckdb\nfrom flows.config import load_config\nfrom ..models import registry\n"
                   "from . import lake\nfrom monitoring.evaluation import metrics\ncon.execute('SELECT 1')\n")
    modules = imported_modules(bad, tmp_path)
    assert {"duckdb", "flows.config", "monitoring.models.registry", "monitoring.store.lake",
            "monitoring.evaluation.metrics"} <= modules
    assert imported_roots(bad, tmp_path) == {"duckdb", "flows", "monitoring"}
    assert {wing_of(m) for m in modules} - {None} == {"models", "store", "evaluation"}
    assert sql_calls(bad) == [6]


def test_nothing_imports_flows():
    for package in [*(OURS - {"flows"}), "bench"]:
        for path in package_files(package):
            assert "flows" not in imported_roots(path), path


def test_module_names_do_not_repeat_across_packages():
    """A module's name says its job in one place only (features.quality computes the report,
    monitoring.store.data_quality stores it); each package keeps its own errors.py."""
    seen: dict[str, list[str]] = {}
    for package in sorted(OURS):
        for path in package_files(package):
            if path.name not in ("__init__.py", "errors.py"):
                seen.setdefault(path.stem, []).append(str(path.relative_to(ROOT)))
    repeated = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not repeated, repeated


def test_no_module_shadows_the_standard_library():
    """A deployment runs `flows/train.py` as a script, so flows/ is first on sys.path in its
    process and in every worker process it spawns: a flows/secrets.py would be imported for
    the standard library's `secrets` (pydantic imports it) and break them."""
    shadowing = [str(path.relative_to(ROOT)) for package in [*sorted(OURS), "bench"]
                 for path in package_files(package) if path.stem in sys.stdlib_module_names]
    assert not shadowing, shadowing

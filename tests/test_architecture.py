"""The one-way dependency rule of the design, checked on the source: features and
aemodels are leaves, monitoring may use them, flows composes everything, and nothing
imports flows."""
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
    "monitoring": {"duckdb", "mlflow", "pandas", "numpy", "pyarrow", "matplotlib"},
    "flows": None,  # the composition layer may use anything installed
}
MAY_IMPORT = {
    "features": {"features"},
    "aemodels": {"aemodels"},
    "monitoring": {"monitoring", "features", "aemodels"},
    "flows": OURS,
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def package_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(OURS))
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


def test_the_checker_catches_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import duckdb\nfrom flows.config import load_config\nfrom . import sibling\n")
    assert imported_roots(bad) == {"duckdb", "flows"}


def test_nothing_outside_flows_imports_flows():
    for package in OURS - {"flows"}:
        for path in package_files(package):
            assert "flows" not in imported_roots(path), path

"""The one-line summary of an ingest says what happened: files ingested, rejected and
skipped, rows accepted and quarantined, with plurals that match the counts."""
from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.render import batch_summary


def batch(status: str, accepted: int, quarantined: int, error: str | None = None) -> dict:
    return {"file": f"/inbox/{status}-{accepted}-{quarantined}.csv", "status": status,
            "rows_in": accepted + quarantined, "rows_accepted": accepted, "rows_quarantined": quarantined,
            "error": error}


@pytest.mark.parametrize("results, line", [
    ([batch("rejected", 0, 1147, "/inbox/x.csv: columns differ")],
     "1 file: 1 rejected; 0 rows accepted, 1147 rows quarantined (see the quarantine table); "
     "first rejected: /inbox/x.csv: columns differ"),
    ([batch("ok", 0, 1147)],
     "1 file: 1 ingested; 0 rows accepted, 1147 rows quarantined (see the quarantine table)"),
    ([batch("ok", 1, 1)], "1 file: 1 ingested; 1 row accepted, 1 row quarantined (see the quarantine table)"),
    ([batch("ok", 500, 0), batch("ok", 20, 2), batch("skipped", 0, 0), batch("rejected", 0, 0, "/inbox/e.csv: empty")],
     "4 files: 2 ingested, 1 rejected, 1 skipped (content seen before); 520 rows accepted, 2 rows quarantined "
     "(see the quarantine table); first rejected: /inbox/e.csv: empty"),
    ([batch("rejected", 0, 0, "/inbox/z.csv: a gzip file, not CSV; decompress it first")],
     "1 file: 1 rejected; 0 rows accepted, 0 rows quarantined; first rejected: /inbox/z.csv: a gzip file, "
     "not CSV; decompress it first"),
])
def test_the_summary_says_what_happened(results, line):
    assert batch_summary(results) == line


def test_nothing_to_report_is_no_summary():
    assert batch_summary([batch("ok", 10, 0), batch("skipped", 0, 0)]) is None


def test_a_rejected_file_is_not_called_accepted(aemon_home, prefect_harness):
    home, config = aemon_home
    inbox = home / "inbox" / "pumps"
    inbox.mkdir(parents=True)
    lines = "".join(f"2026-01-01T00:{i // 60:02d}:{i % 60:02d},p1\n" for i in range(1147))
    Path(inbox / "short.csv").write_text("timestamp,asset\n" + lines)  # sensor columns missing
    result = CliRunner().invoke(app, ["ingest", "pumps", "--config", str(config)])
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert ("error: 1 file: 1 rejected; 0 rows accepted, 1147 rows quarantined (see the quarantine table); "
            "first rejected:") in output
    assert "accepted files" not in output

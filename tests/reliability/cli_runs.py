"""Running `aemon` in the test's own process and reading the one error line it must print."""
from __future__ import annotations

import sys


def run_cli(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    """`aemon ARGS` in this process (the same entry point as the installed command):
    (exit code, stdout, stderr). An exception other than an exit is a traceback: it fails the test."""
    from flows.cli import main

    monkeypatch.setattr(sys, "argv", ["aemon", *args])
    code = 0
    try:
        main()
    except SystemExit as exited:
        code = int(exited.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    """The error a command printed: one message starting `error: ` (rich may wrap it)."""
    assert "Traceback" not in err, err
    text = " ".join(line.strip() for line in err.splitlines() if line.strip())
    assert text.startswith("error: ") and text.count("error: ") == 1, err
    return text

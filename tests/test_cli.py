"""The `maxvit` command line: help for every subcommand, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from maxvit.cli import build_parser, main


def _subcommands(parser) -> dict:
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            return dict(action.choices)
    return {}


def test_help_lists_subcommands():
    out = subprocess.run(
        [sys.executable, "-m", "maxvit", "--help"], capture_output=True, text=True, check=True
    ).stdout
    names = _subcommands(build_parser())
    assert {"data", "train", "eval", "bench", "repro", "report", "summary", "models"} <= set(names)
    for name in names:
        assert f"    {name} " in out, name  # each listed with its help line


def _paths(parser, path=()):
    """Every command path: (), ("data",), ("data", "prepare"), ..."""
    yield path
    for name, sub in _subcommands(parser).items():
        yield from _paths(sub, (*path, name))


def test_every_subcommand_has_help(capsys):
    root = build_parser()
    paths = list(_paths(root))
    assert len(paths) > 5
    for path in paths:
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args([*path, "--help"])
        assert exc.value.code == 0, path
        assert capsys.readouterr().out.startswith("usage:"), path


def test_user_error_is_one_line_and_exit_2(capsys):
    assert main(["summary", "--model", "no_such_model"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown model 'no_such_model'")
    assert err.count("\n") == 1


def test_output_into_a_closed_pipe_ends_quietly():
    """`maxvit models | head -1`: the reader is gone (before: a BrokenPipeError traceback)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "maxvit", "models"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141 and err == b""


def test_keep_freed_memory_respects_the_environment(monkeypatch):
    import platform

    from maxvit.cli import keep_freed_memory

    for key in [k for k in os.environ if k.startswith("MALLOC_") or k == "GLIBC_TUNABLES"]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=131072")
    assert keep_freed_memory() is False  # the user's own malloc tuning wins
    monkeypatch.delenv("GLIBC_TUNABLES")
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is glibc


def test_openmp_wait_policy_is_passive_except_for_benchmarks(monkeypatch, capsys):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert main(["bench", "model", "--models", "no_such_model"]) == 2
    assert "OMP_WAIT_POLICY" not in os.environ
    assert main(["data", "info", "/no/such/data"]) == 2
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    capsys.readouterr()

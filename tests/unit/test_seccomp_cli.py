"""`sandbox policy compile|show|lint` through add_policy_commands and its functions."""
from __future__ import annotations

import argparse

import pytest

from sandbox.seccomp import bpf_sim, load_policy
from sandbox.seccomp.cli import (EXIT_INVALID, EXIT_LINT, EXIT_OK, add_policy_commands,
                                 cmd_policy_compile, cmd_policy_lint, cmd_policy_show)


def run(*argv):
    parser = argparse.ArgumentParser(prog="sandbox")
    add_policy_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["policy", *argv])
    return args.func(args)


def test_subcommands_dispatch_to_the_documented_functions():
    parser = argparse.ArgumentParser(prog="sandbox")
    add_policy_commands(parser.add_subparsers(dest="command", required=True))
    for argv, func in ((["compile", "x"], cmd_policy_compile), (["show", "x"], cmd_policy_show),
                       (["lint", "x"], cmd_policy_lint)):
        assert parser.parse_args(["policy", *argv]).func is func


def test_compile_writes_raw_bpf(tmp_path, capsys):
    out = tmp_path / "default.bpf"
    assert run("compile", "default", "-o", str(out)) == EXIT_OK
    data = out.read_bytes()
    compiled = load_policy("default")
    assert data == compiled.bpf and len(data) % 8 == 0
    assert f"{compiled.instructions} BPF instructions" in capsys.readouterr().out
    assert len(bpf_sim.decode(data)) == compiled.instructions


def test_compile_without_output_only_reports(capsys):
    assert run("compile", "permissive") == EXIT_OK
    assert "permissive:" in capsys.readouterr().out


def test_show_lists_rules_with_locations(capsys):
    assert run("show", "default") == EXIT_OK
    text = capsys.readouterr().out
    assert "default: errno ENOSYS" in text
    assert "kill process" in text
    ioctl = [line for line in text.splitlines() if line.startswith("ioctl ")][0]
    assert "errno EPERM if arg1 == 0x5412 || arg1 == 0x541c" in ioctl
    assert "include/arg-filters.policy:" in ioctl
    mount = [line for line in text.splitlines() if line.startswith("mount ")][0]
    assert "errno EPERM" in mount and "include/deny-dangerous.policy:" in mount


def test_show_pfc(capsys):
    assert run("show", "--pfc", "default") == EXIT_OK
    text = capsys.readouterr().out
    assert "pseudo filter code" in text and "KILL_PROCESS" in text


def test_lint_exit_codes(tmp_path, capsys):
    assert run("lint", "default") == EXIT_OK
    assert "0 error(s), 0 warning(s)" in capsys.readouterr().out
    assert run("lint", "permissive") == EXIT_OK  # warnings only
    bad = tmp_path / "bad.policy"
    bad.write_text("default errno ENOSYS\nptrace: allow\n")
    assert run("lint", str(bad)) == EXIT_LINT
    out = capsys.readouterr().out
    assert "bad.policy:2: error: ptrace is allowed for every argument" in out


@pytest.mark.parametrize("command", ["compile", "show", "lint"])
def test_invalid_policy_exit_code_and_message(tmp_path, capsys, command):
    bad = tmp_path / "broken.policy"
    bad.write_text("default allow\nreed: allow\n")
    assert run(command, str(bad)) == EXIT_INVALID
    assert "broken.policy:2: unknown syscall 'reed'" in capsys.readouterr().err

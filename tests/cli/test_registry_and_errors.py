"""The command line: every command registered in one place, every user error one line and a non-zero exit."""

from __future__ import annotations

import subprocess
import sys

import click
from click.testing import CliRunner

from gateway.cli import main
from gateway.sandbox.ports import free_port


def test_every_command_is_registered_explicitly() -> None:
    ctx = click.Context(main)
    names = main.list_commands(ctx)
    assert set(names) >= {"run", "check-config", "db", "spool", "simulate", "demo", "topology", "query", "group",
                          "sandbox", "status", "devices", "check-broker"}
    loaded = {name: main.get_command(ctx, name) for name in names}
    assert all(command is not None and command.name == name for name, command in loaded.items()), loaded
    assert set(loaded["topology"].commands) == {"show", "promote", "setup", "switchover", "failover", "monitor",
                                                "errant", "relay", "clone"}
    assert {"rebuild", "add-replica"} <= set(loaded["sandbox"].commands)


def test_a_command_loads_only_its_own_module() -> None:
    """`iotgw status` starts without the replication tools (start-up time on a Pi)."""
    code = ("import sys; from gateway.cli import main; import click; "
            "main.get_command(click.Context(main), 'status'); "
            "print(sorted(m for m in sys.modules if m.startswith(('gateway.ops', 'gateway.cli.failover'))))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert run.stdout.strip() == "[]"


def _iotgw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, timeout=60)


def test_a_bad_option_value_is_one_line_not_a_traceback() -> None:
    run = _iotgw("simulate", "--broker", "127.0.0.1:")
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert run.stderr.strip() == "Error: --broker: expected HOST:PORT, got '127.0.0.1:'"


def test_topology_show_fails_when_no_server_answers() -> None:
    unused_tcp_port = free_port()
    result = CliRunner().invoke(main, ["topology", "show", "--servers", f"127.0.0.1:{unused_tcp_port}"])
    assert result.exit_code == 1
    assert f"no server answered: 127.0.0.1:{unused_tcp_port}" in result.output
    result = CliRunner().invoke(main, ["topology", "show", "--json", "--servers", f"127.0.0.1:{unused_tcp_port}"])
    assert result.exit_code == 1 and '"reachable": false' in result.output


def test_refused_operation_is_one_line() -> None:
    unused_tcp_port = free_port()
    result = CliRunner().invoke(main, ["topology", "relay", "add", "--servers", f"127.0.0.1:{unused_tcp_port}",
                                       f"127.0.0.1:{unused_tcp_port}"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("Error: ")
    assert "Traceback" not in result.output


def test_help_of_a_subcommand_exits_zero() -> None:
    for args in (["devices", "init", "--help"], ["topology", "relay", "add", "--help"], ["sandbox", "up", "--help"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0 and "Usage:" in result.output and "Error" not in result.output, args

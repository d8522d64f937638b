"""The command line: every command registered in one place, every user error one line and a non-zero exit."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from gateway.cli import REGISTRY, main
from gateway.cli.topology import topology
from gateway.sandbox.cli import sandbox
from gateway.sandbox.ports import free_port


def test_every_command_is_registered_explicitly() -> None:
    assert set(main.commands) >= {"run", "check-config", "db", "spool", "simulate", "demo", "topology", "query",
                                  "group", "sandbox"}
    assert set(topology.commands) == {"show", "promote", "setup", "switchover", "failover", "monitor", "errant",
                                      "relay", "clone"}
    assert {"rebuild", "add-replica"} <= set(sandbox.commands)
    registered = {c.name for commands in REGISTRY.values() for c in commands}
    assert {"setup", "errant", "rebuild", "add-replica", "group"} <= registered


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

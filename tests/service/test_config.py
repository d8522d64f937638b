"""The one config loader: clear errors naming the bad key, secrets from files or the environment."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from gateway import config
from gateway.cli import main
from gateway.config import ConfigError


@pytest.mark.parametrize("toml, message", [
    ("[mqtt]\nport = 70000\n", "mqtt.port: 70000 is not a TCP port"),
    ("[mqtt]\nport = \"x\"\n", "mqtt.port: expected an integer"),
    ("[mqtt]\nhots = \"a\"\n", "mqtt.hots: unknown key"),
    ("[mqqt]\n", "mqqt: unknown section"),
    ("[database]\nkind = \"mysql\"\n", "database.servers: at least one HOST:PORT"),
    ("[database]\nkind = \"oracle\"\n", "database.kind: must be 'sqlite' or 'mysql'"),
    ("[database]\nkind = \"mysql\"\nservers = [\"nohost\"]\n", "database.servers[0]: expected HOST:PORT"),
    ("[spool]\ngroup_max = 0\n", "spool.group_max: must be at least 1"),
    ("[[serial.port]]\nbaud = 9600\n", "serial.port[0].port: a device path is required"),
    ("[mqtt]\ntls_cert = \"c.pem\"\n", "mqtt.tls_cert and mqtt.tls_key"),
    ("[log]\nlevel = \"loud\"\n", "log.level"),
    ("not toml at all [", "not valid TOML"),
])
def test_bad_config_names_the_key(tmp_path, toml, message):
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        config.load(path)
    result = CliRunner().invoke(main, ["check-config", "--config", str(path)])
    assert result.exit_code != 0 and message.split(":")[0] in result.output


def test_secrets_from_file_and_environment(tmp_path, monkeypatch):
    (tmp_path / "pw").write_text("s3cret\n")
    path = tmp_path / "c.toml"
    path.write_text(f'[mqtt]\npassword_file = "{tmp_path / "pw"}"\n[database]\nkind = "mysql"\n'
                    'servers = ["127.0.0.1:3306"]\npassword_env = "IOTGW_TEST_PW"\n')
    cfg = config.load(path)
    assert config.resolve_secret("mqtt", cfg.mqtt) == "s3cret"
    with pytest.raises(ConfigError, match="database.password_env: environment variable IOTGW_TEST_PW is not set"):
        config.resolve_secret("database", cfg.database)
    monkeypatch.setenv("IOTGW_TEST_PW", "pw2")
    assert config.resolve_secret("database", cfg.database) == "pw2"
    result = CliRunner().invoke(main, ["check-config", "--config", str(path)])
    assert result.exit_code == 0 and "OK" in result.output and "pw2" not in result.output


def test_missing_config_file_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(main, ["run", "--config", str(tmp_path / "nope.toml")])
    assert result.exit_code != 0 and "config file not found" in result.output


def test_defaults_without_a_config_file():
    cfg = config.load(None)
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.database.kind) == ("localhost", 1883, "sqlite")

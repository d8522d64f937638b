"""pytest fixtures for real MariaDB/Mosquitto servers (imported by tests/conftest.py; pytest is a test extra).

- ``shared_sandbox`` (session, one per xdist worker): db1 primary, db2 and db3 replicas, a broker.
- ``sandbox``: the shared one, reset (no user databases, replicas caught up) before each test;
  rebuilt first if an earlier test left it broken (a node down, replication stopped).
- ``make_sandbox(replicas=..., broker=..., replication=..., tls=..., mariadb_servers=..., brokers=...)``: a private
  sandbox under tmp_path for tests that break the topology; always stopped afterwards.

When a test that used a sandbox fails, the last 30 lines of each server's log are added to its report.

Use from any conftest.py (tests/, hil_tests/, ...) with one line; the hook and fixtures then apply to the
tests below that folder::

    from gateway.sandbox.pytest_fixtures import *  # noqa: F403
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import pytest

from gateway.sandbox import Sandbox, SandboxError

__all__ = ["make_sandbox", "pytest_runtest_makereport", "sandbox", "shared_sandbox"]

_USED = pytest.StashKey[list[Sandbox]]()


def _use(request: pytest.FixtureRequest, sb: Sandbox) -> None:
    request.node.stash.setdefault(_USED, []).append(sb)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.failed:
        for sb in item.stash.get(_USED, []):
            for name, text in sb.logs(30).items():
                report.sections.append((f"sandbox {sb.directory} {name} log (last 30 lines)", text or "(empty)"))
    return report


@pytest.fixture(scope="session")
def shared_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One sandbox per worker process (1 primary + 2 replicas + broker), stopped at session end."""
    sb = Sandbox.up(tmp_path_factory.mktemp("shared-sandbox"), replicas=2, broker=True)
    try:
        yield sb
    finally:
        sb.down()


@pytest.fixture
def sandbox(shared_sandbox: Sandbox, request: pytest.FixtureRequest) -> Sandbox:
    """The shared sandbox after a proven reset (rebuilt if a previous test broke it)."""
    _use(request, shared_sandbox)
    problems = shared_sandbox.problems()
    if not problems:
        try:
            shared_sandbox.reset()
        except SandboxError as exc:
            problems = [str(exc)]
    if problems:
        warnings.warn(f"shared sandbox was broken, rebuilding it: {'; '.join(problems)}", stacklevel=1)
        shared_sandbox.rebuild()
    return shared_sandbox


@pytest.fixture
def make_sandbox(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Sandbox]]:
    """Factory for private sandboxes (own folders, always stopped at the end of the test)."""
    made: list[Sandbox] = []

    def make(
        replicas: int = 2,
        broker: bool = True,
        replication: bool = True,
        tls: bool = False,
        mariadb_servers: bool = True,
        brokers: int = 1,
    ) -> Sandbox:
        # mktemp gives short paths (the test name is not in them), which keeps socket paths short too.
        sb = Sandbox.up(
            tmp_path_factory.mktemp("sb"),
            replicas=replicas,
            broker=broker,
            replication=replication,
            tls=tls,
            mariadb_servers=mariadb_servers,
            brokers=brokers,
        )
        made.append(sb)
        _use(request, sb)
        return sb

    try:
        yield make
    finally:
        for sb in made:
            sb.down()

"""Fixtures shared by every test under tests/: real MariaDB/Mosquitto servers from gateway.sandbox.

- ``shared_sandbox`` (session, one per xdist worker): db1 primary, db2 and db3 replicas, a broker.
- ``sandbox``: the shared one after a proven reset (rebuilt first if an earlier test broke it).
- ``make_sandbox(replicas=..., broker=..., replication=..., tls=..., mariadb_servers=...)``: private
  sandboxes for tests that break the topology; always stopped afterwards.
On a failure, the servers' log tails are added to the test's report. Definitions:
gateway/sandbox/pytest_fixtures.py.
"""

from gateway.sandbox.pytest_fixtures import *  # noqa: F403

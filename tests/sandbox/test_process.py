"""The process launcher: own session, PID checked against /proc/PID/cmdline before any signal."""

from __future__ import annotations

import os
import signal
import sys

import pytest

from gateway.sandbox import process

SLEEPER = [sys.executable, "-c", "import time, sys; time.sleep(120)  # sandbox-test-sleeper"]


@pytest.fixture
def sleeper(tmp_path):
    launched = process.start_process(SLEEPER, tmp_path / "sleeper.log")
    yield launched
    process.kill_process(launched.pid, "sandbox-test-sleeper")


def test_started_in_own_session_and_recognised_by_marker(sleeper):
    assert os.getsid(sleeper.pid) == sleeper.pid  # its own session: a Ctrl-C to the runner does not reach it
    assert process.is_ours(sleeper.pid, "sandbox-test-sleeper")
    assert not process.is_ours(sleeper.pid, "mariadbd")


def test_signal_refused_when_cmdline_does_not_match(sleeper):
    with pytest.raises(process.NotOurProcess, match="does not contain 'mariadbd'"):
        process.send_signal(sleeper.pid, "mariadbd", signal.SIGKILL)
    assert process.is_ours(sleeper.pid, "sandbox-test-sleeper")  # still running


def test_freeze_thaw_and_stop(sleeper):
    marker = "sandbox-test-sleeper"
    process.send_signal(sleeper.pid, marker, signal.SIGSTOP)
    process.wait_until(lambda: process.is_frozen(sleeper.pid, marker), 10, what="SIGSTOP")
    process.send_signal(sleeper.pid, marker, signal.SIGCONT)
    process.wait_until(lambda: not process.is_frozen(sleeper.pid, marker), 10, what="SIGCONT")
    process.send_signal(sleeper.pid, marker, signal.SIGSTOP)
    process.stop_process(sleeper.pid, marker, timeout=20)  # SIGTERM reaches a frozen process too
    assert not process.is_ours(sleeper.pid, marker)  # gone, and reaped (not a zombie)
    with pytest.raises(process.NotOurProcess, match="no such process|does not contain"):
        process.send_signal(sleeper.pid, marker, signal.SIGTERM)


def test_wait_until_names_what_it_waited_for():
    with pytest.raises(TimeoutError, match="waiting for the moon"):
        process.wait_until(lambda: False, 0.2, what="the moon")
    assert process.wait_until(lambda: 42, 1) == 42

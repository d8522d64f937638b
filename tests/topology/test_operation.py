"""The step log every operation keeps, and the one error type operations raise."""

from gateway.ops.clone import CloneError
from gateway.ops.failover import FailoverError
from gateway.ops.groups import GroupError
from gateway.ops.relay import RelayError
from gateway.ops.setup import SetupError
from gateway.ops.switchover import SwitchoverError
from gateway.topology.operation import OpError, Steps
from gateway.topology.promote import PromotionError


def test_steps_keep_order_report_progress_and_time_each_step() -> None:
    seen: list[str] = []
    lines: list[str] = []
    timeline: list[tuple[float, str]] = []
    step = Steps(seen.append, lines, timeline=timeline)
    step("fenced a")
    step("promoted b")
    assert lines == seen == ["fenced a", "promoted b"]
    assert [m for _, m in timeline] == lines and timeline[0][0] <= timeline[1][0]
    quiet = Steps()
    quiet("only kept")
    assert quiet.lines == ["only kept"]


def test_every_operation_error_is_an_op_error() -> None:
    for error in (CloneError, FailoverError, GroupError, RelayError, SetupError, SwitchoverError, PromotionError):
        assert issubclass(error, OpError) and issubclass(error, RuntimeError)

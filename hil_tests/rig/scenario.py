"""What scenario tests share: the rig's boards, the simulated boards' settings, capability checks."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from .board import Board
from .sim import Harness

__all__ = ["ADC_MV", "RTC_EPOCH", "Rig", "needs"]

# DS1307 time the simulated boards start with: 2026-11-18T19:33:20Z (any valid time after 2001 would do).
RTC_EPOCH = 1795030400
# Analog input of the simulated boards: 1.5 V (readings of 1.495 V after the 10-bit ADC).
ADC_MV = 1500


@dataclass
class Rig:
    """The boards of one scenario, and the harness behind them on the sim rig (None on a serial rig)."""

    boards: list[Board]
    harness: Harness | None


def needs(board: Board, capability: str) -> None:
    """Skip the test if ``board``'s rig lacks ``capability`` (see :attr:`Board.capabilities`)."""
    if capability not in board.capabilities:
        hint = " (give --power-cmd)" if capability in ("power", "freeze") else " (the sim rig can: --rig sim)"
        pytest.skip(f"board {board.name}: this rig cannot {capability!r}{hint}")

"""The local runtime's demo and eval silence handler metrics only while they run."""

from __future__ import annotations

import os

import pytest
from support_agent_local.emulator import metrics_off


def test_metrics_are_off_inside_and_the_variable_is_gone_after(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    with metrics_off():
        assert os.environ["POWERTOOLS_METRICS_DISABLED"] == "true"
    assert "POWERTOOLS_METRICS_DISABLED" not in os.environ


def test_a_callers_own_choice_is_kept_and_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    with metrics_off():
        assert os.environ["POWERTOOLS_METRICS_DISABLED"] == "false"
    assert os.environ["POWERTOOLS_METRICS_DISABLED"] == "false"

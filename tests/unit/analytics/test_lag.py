"""The lag gauge: the age of the oldest record of the batch in hand, then of the last batch when recorded."""

from __future__ import annotations

import time

from services.analytics.metrics import Lag


def test_lag_grows_while_a_batch_is_in_hand_and_holds_its_final_age_after() -> None:
    lag = Lag()
    assert lag.seconds() == 0.0
    now_ms = int(time.time() * 1000)
    lag.begin([now_ms - 500, now_ms - 3000, 0])  # 0: a record without a timestamp
    assert 2.9 < lag.seconds() < 10
    lag.end()
    held = lag.seconds()
    assert 2.9 < held < 10
    time.sleep(0.01)  # the behaviour under test: once a batch ended, its age no longer grows with the clock
    assert lag.seconds() == held
    lag.begin([0])
    lag.end()
    assert lag.seconds() == held  # nothing known about that batch


def test_lag_drops_to_zero_once_a_fetch_finds_nothing_new() -> None:
    lag = Lag()
    now_ms = int(time.time() * 1000)
    lag.begin([now_ms - 3000])
    lag.idle()  # not while a batch is in hand
    assert lag.seconds() > 2.9
    lag.end()
    assert lag.seconds() > 2.9
    lag.idle()
    assert lag.seconds() == 0.0

"""The lag gauge: the age of the oldest record of the batches in hand, then of the last batch when recorded."""

from __future__ import annotations

import time

from services.analytics.metrics import Lag


def test_lag_grows_while_a_batch_is_in_hand_and_holds_its_final_age_after() -> None:
    lag = Lag()
    assert lag.seconds() == 0.0
    now_ms = int(time.time() * 1000)
    batch = lag.begin([now_ms - 500, now_ms - 3000, 0])  # 0: a record without a timestamp
    assert 2.9 < lag.seconds() < 10
    lag.end(batch)
    held = lag.seconds()
    assert 2.9 < held < 10
    time.sleep(0.01)  # the behaviour under test: once a batch ended, its age no longer grows with the clock
    assert lag.seconds() == held
    lag.end(lag.begin([0]))
    assert lag.seconds() == held  # nothing known about that batch


def test_lag_drops_to_zero_once_a_fetch_finds_nothing_new() -> None:
    lag = Lag()
    now_ms = int(time.time() * 1000)
    batch = lag.begin([now_ms - 3000])
    lag.idle()  # not while a batch is in hand
    assert lag.seconds() > 2.9
    lag.end(batch)
    assert lag.seconds() > 2.9
    lag.idle()
    assert lag.seconds() == 0.0


def test_with_two_batches_in_hand_the_older_one_sets_the_lag() -> None:
    lag = Lag()
    now_ms = int(time.time() * 1000)
    older = lag.begin([now_ms - 3000])
    newer = lag.begin([now_ms - 1000])
    assert lag.seconds() > 2.9  # the newer batch does not hide the older one
    lag.end(newer)
    assert lag.seconds() > 2.9  # the older one is still being recorded
    lag.idle()
    assert lag.seconds() > 2.9
    lag.end(older)
    held = lag.seconds()
    assert 2.9 < held < 10
    lag.idle()
    assert lag.seconds() == 0.0

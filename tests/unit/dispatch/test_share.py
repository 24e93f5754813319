"""How a multi-queue pop shares its count: a lane marker stands for a whole lane of jobs."""

from __future__ import annotations

from shared.dispatch.records import lane_aware_scores, share_out


def test_a_queue_of_lanes_gets_the_whole_count_not_one_job_per_lane() -> None:
    lanes = [(f"@key-{n}\x1f".encode(), 100.0) for n in range(20)]
    scores = lane_aware_scores(lanes, 50)
    assert len(scores) == 50
    assert share_out(["keyed", "empty"], [scores, []], 50) == [("keyed", 50)]


def test_plain_jobs_count_once_each_and_best_scores_win_across_queues() -> None:
    plain = lane_aware_scores([(b"a", 1.0), (b"b", 3.0)], 3)
    assert plain == [1.0, 3.0]
    keyed = lane_aware_scores([(b"@k\x1f", 2.0)], 3)
    assert keyed == [2.0, 2.0, 2.0]
    assert sorted(share_out(["plain", "keyed"], [plain, keyed], 3)) == [("keyed", 2), ("plain", 1)]

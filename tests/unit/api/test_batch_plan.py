"""Batch planning: refs resolve to ids, cycles and unknown refs are refused with the job's index."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.api.http.problems import ApiError
from services.api.jobs.batch_plan import BatchPlan, plan_batch
from services.api.jobs.schemas import BatchSubmission

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def plan(jobs: list[dict[str, Any]]) -> BatchPlan:
    batch = BatchSubmission.model_validate({"jobs": [{"queue": "q", "jobType": "t", **j} for j in jobs]})
    return plan_batch(batch, now=NOW, max_payload_bytes=1000)


def refused(jobs: list[dict[str, Any]]) -> list[str]:
    with pytest.raises(ApiError) as info:
        plan(jobs)
    return sorted(e.field for e in info.value.errors)


def test_refs_become_ids_and_outside_ids_are_collected() -> None:
    outside = uuid.uuid4()
    p = plan([{"ref": "a"}, {"ref": "b", "dependsOn": ["a", str(outside)]}, {"dependsOn": [str(outside), "b"]}])
    a, b, c = p.jobs
    assert b.depends_on == [a.id, outside]
    assert c.depends_on == [outside, b.id]
    assert p.external == {outside: [1, 2]}


def test_duplicate_dependencies_collapse() -> None:
    p = plan([{"ref": "a"}, {"dependsOn": ["a", "a"]}])
    assert p.jobs[1].depends_on == [p.jobs[0].id]


def test_a_ref_may_appear_after_its_dependent() -> None:
    p = plan([{"dependsOn": ["later"]}, {"ref": "later"}])
    assert p.jobs[0].depends_on == [p.jobs[1].id]


def test_unknown_ref_names_the_job() -> None:
    assert refused([{}, {"dependsOn": ["ghost"]}]) == ["jobs[1].dependsOn"]


def test_cycles_name_the_jobs_on_and_behind_them() -> None:
    jobs: list[dict[str, Any]] = [
        {"ref": "a", "dependsOn": ["b"]}, {"ref": "b", "dependsOn": ["a"]}, {"dependsOn": ["a"]}, {"ref": "ok"},
    ]
    assert refused(jobs) == ["jobs[0].dependsOn", "jobs[1].dependsOn", "jobs[2].dependsOn"]


def test_every_problem_is_reported_at_once() -> None:
    jobs: list[dict[str, Any]] = [{"ref": "a"}, {"ref": "a"}, {"dependsOn": ["nope"]}, {"payload": {"x": "y" * 2000}}]
    with pytest.raises(ApiError) as info:
        plan(jobs)
    assert info.value.status == 413  # an oversized payload decides the status
    assert sorted(e.field for e in info.value.errors) == ["jobs[1].ref", "jobs[2].dependsOn", "jobs[3].payload"]


@given(st.lists(st.lists(st.integers(0, 7), max_size=3), min_size=1, max_size=8))
def test_acyclic_graphs_plan_and_cyclic_ones_do_not(edges: list[list[int]]) -> None:
    n = len(edges)
    jobs = [{"ref": f"r{i}", "dependsOn": [f"r{d}" for d in deps if d < n]} for i, deps in enumerate(edges)]
    graph = {i: {d for d in deps if d < n} for i, deps in enumerate(edges)}

    def has_cycle() -> bool:
        state: dict[int, int] = {}

        def visit(node: int) -> bool:
            state[node] = 1
            for nxt in graph[node]:
                if state.get(nxt) == 1 or (nxt not in state and visit(nxt)):
                    return True
            state[node] = 2
            return False

        return any(node not in state and visit(node) for node in graph)

    if has_cycle():
        with pytest.raises(ApiError):
            plan(jobs)
    else:
        p = plan(jobs)
        position = {job.id: i for i, job in enumerate(p.jobs)}
        for i, job in enumerate(p.jobs):
            assert {position[d] for d in job.depends_on} == graph[i]

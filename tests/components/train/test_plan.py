"""The batch plan (no ranks started): deterministic, disjoint, length-bucketed; a clip's rows together."""

from __future__ import annotations

from components.train import data as D


def test_plan_is_deterministic_disjoint_and_bucketed() -> None:
    lengths = [10 + (i * 37) % 200 for i in range(1000)]
    plan = D.Plan(batch_size=8, world=2, accum=2, seed=3)
    steps = plan.epoch(lengths, 0)
    assert steps == plan.epoch(lengths, 0) and steps != plan.epoch(lengths, 1)  # same per epoch, reshuffled across
    assert len(steps) == 1000 // (8 * 2 * 2) and all(len(s) == 4 for s in steps)
    seen = [i for s in steps for mb in s for i in mb]
    assert len(seen) == len(set(seen))  # no row twice in an epoch
    mine = [set(i for mb in plan.mine(s, r) for i in mb) for s in steps for r in (0, 1)]
    assert all(len(m) == 16 for m in mine)
    spread = sum(max(lengths[i] for i in mb) - min(lengths[i] for i in mb) for s in steps for mb in s) / (len(steps) * 4)
    assert spread < 20  # lengths within a micro-batch are close (random batches: ~150)
    assert D.total_steps(len(steps), 5, None) == 5 * len(steps) and D.total_steps(len(steps), 5, 7) == 7


def test_plan_keeps_a_clips_rows_together() -> None:
    """With a clip key per row, a clip's rows are shuffled as a unit and stay neighbours (train.pack_clip_rows);
    without keys, the plan is the per-row one."""
    clips = [i // 3 for i in range(600)] + list(range(200, 300))  # 200 clips asked 3 times, 100 asked once
    lengths = [40 + (c * 7) % 50 + i % 3 for i, c in enumerate(clips)]
    plan = D.Plan(batch_size=8, world=2, accum=1, seed=5)
    steps = plan.epoch(lengths, 0, clips)
    assert steps == plan.epoch(lengths, 0, clips) and steps != plan.epoch(lengths, 1, clips)
    seen = [i for s in steps for mb in s for i in mb]
    assert len(seen) == len(set(seen)) and len(steps) == 700 // 16
    where: dict[int, set[int]] = {}
    for n, mb in enumerate(mb for s in steps for mb in s):
        for i in mb:
            where.setdefault(clips[i], set()).add(n)
    asked = [c for c in range(200) if c in where]
    assert all(len(where[c]) <= 2 for c in asked)  # in one micro-batch, or cut once by its edge
    assert sum(len(where[c]) == 1 for c in asked) > 0.6 * len(asked)
    assert plan.epoch(lengths, 0, list(range(len(lengths)))) == plan.epoch(lengths, 0)  # one row per key

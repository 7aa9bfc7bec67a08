"""One training rank: `python -m components.train.worker --job OUT/job.json`.

Started by `desta train` through torchrun (one node) or the DeepSpeed launcher (hostfile); never by
hand. Every rank builds the model and the batch plan, DeepSpeed runs ZeRO over the trainable
weights, rank 0 alone writes history/metrics/export and talks to MLflow.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import resource
import shutil
import sys
import threading
import time
import traceback
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import Any

EXIT_DATA, EXIT_NAN, EXIT_ORPHANED = 2, 3, 4
_T0 = time.perf_counter()


class NaNLoss(RuntimeError):
    pass


def exit_with_parent() -> None:
    """Stop this rank if its launcher dies (torchrun starts ranks in their own sessions, so a killed
    `desta train` would otherwise leave them training, and a re-run would race them)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def step_seed(seed: int, step: int, micro: int, rank: int) -> int:
    """Dropout RNG per (step, micro-batch, rank): a resumed run draws the same masks."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{step}/{micro}/{rank}".encode()).digest()[:7], "big")


def latest_tag(ckpt_dir: Path) -> str | None:
    """The newest complete DeepSpeed checkpoint (DeepSpeed writes `latest` after saving it)."""
    latest = ckpt_dir / "latest"
    if not latest.is_file():
        return None
    tag = latest.read_text().strip()
    return tag if (ckpt_dir / tag).is_dir() else None


def prune(ckpt_dir: Path, keep: int) -> None:
    tags = sorted(p for p in ckpt_dir.glob("step-*") if p.is_dir())
    for old in tags[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _write_json(path: Path, data: Any) -> None:
    from components.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _summary(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Loss at the start and end (mean of up to 5 steps), steady-state throughput (step 1 excluded)."""
    if not history:
        return {"steps": 0, "loss_first": None, "loss_last": None, "samples_per_s": None, "steps_per_s": None,
                "peak_rss_mb_per_rank": []}
    losses = [h["loss"] for h in history]
    k = max(1, min(5, len(losses) // 4))
    steady = history[1:] or history
    return {
        "steps": history[-1]["step"],
        "loss_first": sum(losses[:k]) / k,
        "loss_last": sum(losses[-k:]) / k,
        "samples_per_s": sum(h["samples_per_s"] for h in steady) / len(steady),
        "steps_per_s": len(steady) / sum(h["step_seconds"] for h in steady),
        "peak_rss_mb_per_rank": [max(h["peak_rss_mb"][r] for h in history) for r in range(len(history[0]["peak_rss_mb"]))],
    }


def run(job: dict[str, Any]) -> int:  # noqa: C901 -- one linear training script reads best in one place
    import deepspeed
    import deepspeed.comm as dist
    import torch
    from transformers import get_cosine_schedule_with_warmup

    from components.config import Profile
    from components.model import DestaModel, DestaSpec
    from components.model import prompt as P
    from components.model.encoder import EncoderCache
    from components.train import data as D
    from components.train.dsconfig import zero_stage

    cpu = job["device"] == "cpu"
    if cpu:
        # DeepSpeed JIT-builds its shared-memory all-reduce op (used only by inference tensor parallelism)
        # at every start, under torch's lock file; a rank killed inside that left the lock behind, and every
        # later start waited on it forever (CI hung so). Training all-reduces through gloo: skip the op.
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.init_distributed(dist_backend="gloo" if cpu else "nccl")
    rank, world = dist.get_rank(), dist.get_world_size()

    def phase(name: str) -> None:
        if rank == 0:
            print(f"[train] {time.perf_counter() - _T0:6.1f} s  {name}", flush=True)

    phase("process group up")
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    if cpu:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
        device = torch.device("cpu")
    else:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    prof = Profile(**job["profile"])
    cfg = prof.train
    out, ckpt_dir = Path(job["out"]), Path(job["out"]) / "checkpoints"
    data_root = Path(prof.data.root)
    stage = zero_stage(job["deepspeed"])

    torch.manual_seed(cfg.seed)  # identical connector init on every rank (ZeRO-3 partitions local copies)
    model = DestaModel.from_backbones(DestaSpec.from_profile(prof), cfg.precision, with_decoder=False,
                                      device=device.type)
    model.detach_whisper()
    model.whisper.to(device)
    model.to(device)
    frozen_before = model.frozen_digest() if rank == 0 else None
    phase("backbones loaded")

    rows = D.read_rows([Path(f) for f in job["row_files"]])
    enc = D.encode_rows(rows, model.tokenizer, prof.model.prompt_size, cfg.max_length, prof.model.max_transcript_tokens)
    plan = D.Plan(cfg.batch_size, world, cfg.grad_accum, cfg.seed)
    steps_per_epoch = len(plan.epoch(enc.lengths, 0))
    total = D.total_steps(steps_per_epoch, cfg.epochs, cfg.max_steps)
    if total == 0:
        raise D.TrainDataError(
            f"{len(rows) - enc.skipped} usable rows make no full optimizer step of "
            f"{cfg.batch_size} per rank x {world} ranks x {cfg.grad_accum} accumulation")

    cache = None
    if job.get("encoder_cache"):
        cache = EncoderCache(Path(job["encoder_cache"]), job["whisper_digest"], prof.model.encoder_layers, model.states_dtype)
    audio = D.AudioStates(model.encode, data_root, cache)
    if prof.model.normalize_states:  # every rank computes the same statistics from the same clips
        picked = D.sample_refs([r for ex, r in zip(enc.examples, enc.refs) if ex], prof.model.state_stats_clips)
        clips = model.fit_state_stats(audio(picked[i : i + 8]) for i in range(0, len(picked), 8))
        phase(f"connector input statistics from {clips} training clips")

    if stage == 3:  # queries are read directly in Connector.forward, not through a submodule call
        for p in model.connector.layer_prompts:
            deepspeed.zero.register_external_parameter(model.connector, p)
    trainable = [p for p in model.parameters() if p.requires_grad]
    engine, _, _, scheduler = deepspeed.initialize(
        model=model, model_parameters=trainable, config=job["deepspeed"],
        lr_scheduler=lambda opt: get_cosine_schedule_with_warmup(opt, cfg.warmup_steps, total),
    )

    phase(f"DeepSpeed ZeRO-{stage} engine ready ({len(rows)} rows, {total} steps)")
    if enc.truncated or enc.skipped:
        phase(f"rows over max_length {cfg.max_length}: {enc.truncated} truncated, {enc.skipped} skipped (too long to keep any response)")
    start = 0
    tag = latest_tag(ckpt_dir)
    if tag:
        _, client = engine.load_checkpoint(str(ckpt_dir), tag, load_module_strict=False)
        start = int(client["step"])
    history_path = out / "history.jsonl"
    history: list[dict[str, Any]] = []
    if rank == 0 and history_path.is_file():  # drop steps a crashed run logged after its last checkpoint
        history = [h for h in map(json.loads, history_path.read_text().splitlines()) if h["step"] <= start]
        history_path.write_text("".join(json.dumps(h) + "\n" for h in history))

    samples_per_step = cfg.batch_size * cfg.grad_accum * world
    t_start = time.perf_counter()

    with ExitStack() as stack:
        tracker = None
        if rank == 0 and job.get("track"):
            tracker = stack.enter_context(_tracking(job, prof, out, enc, len(rows), total, steps_per_epoch))
        phase(f"starting at step {start}")
        engine.train()
        epoch_plan: tuple[int, list] = (-1, [])
        for step in range(start, total):
            epoch, offset = divmod(step, steps_per_epoch)
            if epoch_plan[0] != epoch:
                epoch_plan = (epoch, plan.epoch(enc.lengths, epoch))
            batches = plan.mine(epoch_plan[1][offset], rank)
            t0 = time.perf_counter()
            lr = scheduler.get_last_lr()[0]  # the rate this step uses
            loss_sum, encoded0 = 0.0, audio.encoded
            for micro, idx in enumerate(batches):
                torch.manual_seed(step_seed(cfg.seed, step, micro, rank))
                batch = {k: v.to(device) for k, v in P.collate([enc.examples[i] for i in idx], model.tokenizer.pad_token_id).items()}
                states, frames = audio([r for i in idx for r in enc.refs[i]])
                loss = engine(audio_states=states.to(device), audio_frames=frames, **batch).loss
                bad = torch.tensor([0.0 if torch.isfinite(loss).item() else 1.0], device=device)
                dist.all_reduce(bad)
                if bad.item() > 0:
                    raise NaNLoss(f"loss is not finite at step {step + 1} (micro-batch {micro}); stopped. "
                                  f"The last good checkpoint is kept: {latest_tag(ckpt_dir) or 'none yet'}")
                engine.backward(loss)
                engine.step()
                loss_sum += float(loss.detach())
            gpu_peak = torch.cuda.max_memory_allocated(device) / 2**20 if not cpu else 0.0
            stats = torch.tensor([loss_sum / len(batches), peak_rss_mb(), float(audio.encoded - encoded0), gpu_peak],
                                 device=device)
            gathered = [torch.zeros_like(stats) for _ in range(world)]
            dist.all_gather(gathered, stats)
            seconds = time.perf_counter() - t0
            if rank == 0:
                row = {"step": step + 1, "epoch": epoch, "loss": sum(float(g[0]) for g in gathered) / world, "lr": lr,
                       "samples_per_s": samples_per_step / seconds, "step_seconds": seconds,
                       "peak_rss_mb": [round(float(g[1]), 1) for g in gathered],
                       "encoded_clips": int(sum(float(g[2]) for g in gathered))}
                if not cpu:
                    row["peak_gpu_mb"] = [round(float(g[3]), 1) for g in gathered]
                norm = engine.get_global_grad_norm()
                if norm is not None and math.isfinite(float(norm)):
                    row["grad_norm"] = float(norm)
                history.append(row)
                with open(history_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"[train] step {step + 1}/{total} loss {row['loss']:.4f} lr {lr:.2e} "
                      f"{row['samples_per_s']:.1f} samples/s", flush=True)
                if tracker and ((step + 1) % cfg.log_every == 0 or step + 1 == total):
                    tracker.log_metrics({"loss": row["loss"], "lr": lr, "samples_per_s": row["samples_per_s"],
                                         "peak_rss_mb": max(row["peak_rss_mb"]),
                                         **{f"peak_rss_mb.rank{r}": v for r, v in enumerate(row["peak_rss_mb"])},
                                         **{f"peak_gpu_mb.rank{r}": v for r, v in enumerate(row.get("peak_gpu_mb", []))}},
                                        step=step + 1)
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == total:
                engine.save_checkpoint(str(ckpt_dir), tag=f"step-{step + 1:08d}",
                                       client_state={"step": step + 1, "fingerprint": job["fingerprint"]},
                                       exclude_frozen_parameters=True)
                dist.barrier()
                if rank == 0:
                    prune(ckpt_dir, cfg.keep_checkpoints)

        phase("steps done")
        # Export: trainable weights only (gathered from the ZeRO-3 partitions), and check that the
        # frozen backbones are bit-identical to what was loaded.
        gather = deepspeed.zero.GatheredParameters if stage == 3 else None
        with gather(trainable, modifier_rank=None) if gather else nullcontext():
            state = model.trainable_state_dict() if rank == 0 else None
        frozen = [p for p in model.parameters() if not p.requires_grad]
        with gather(frozen, modifier_rank=None) if gather else nullcontext():
            frozen_after = model.frozen_digest() if rank == 0 else None
        if rank == 0:
            if frozen_after != frozen_before:
                raise RuntimeError("frozen backbone weights changed during training (digest mismatch)")
            wall = time.perf_counter() - t_start
            summary = {**_summary(history), "rows": len(rows), "rows_truncated": enc.truncated,
                       "rows_skipped_too_long": enc.skipped, "total_steps": total, "resumed_from_step": start,
                       "zero_stage": stage, "world_size": world, "wall_seconds_this_launch": wall,
                       "encoder_clips_encoded_this_launch": sum(h["encoded_clips"] for h in history if h["step"] > start),
                       "frozen_sha256": frozen_after, "fingerprint": job["fingerprint"]}
            model.save_pretrained(out / "model", state, extra={"train": {
                "fingerprint": job["fingerprint"], "steps": total, "rows_sha256": job["rows_sha256"],
                "loss_last": summary["loss_last"]}})
            _write_json(out / "metrics.json", summary)
            _write_json(out / "plots" / "loss.json",  # for `dvc plots` (x: step, y: loss)
                        [{k: h[k] for k in ("step", "loss", "lr", "samples_per_s")} for h in history])
            phase("model exported")
            if tracker:
                tracker.log_metrics({f"final.{k}": float(v) for k, v in summary.items()
                                     if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None})
                tracker.log_artifact(history_path)
                tracker.log_artifact(out / "metrics.json")
                tracker.log_artifact(out / "model", "model")
                tracker.log_lineage()  # again, now that data/train/model exists: records its digest (evaluate's input)
                version = tracker.register_model("model", prof.tracking.registered_model, tags={
                    "fingerprint": job["fingerprint"], "rows_sha256": job["rows_sha256"], "profile": job["profile_name"]})
                tracker.set_tags({"desta.registered_model": prof.tracking.registered_model,
                                  "desta.registered_version": version})
                run_file = ckpt_dir / "run.json"
                _write_json(run_file, {**json.loads(run_file.read_text()), "registered_version": version})
        dist.barrier()
    phase("done")
    dist.destroy_process_group()
    return 0


@contextmanager
def _tracking(job: dict[str, Any], prof: Any, out: Path, enc: Any, n_rows: int, total: int, steps_per_epoch: int):
    """Rank 0's MLflow run: a new one, or the interrupted one this run continues (run.json)."""
    from components.tracking import stage_run

    run_file = out / "checkpoints" / "run.json"  # written by the launcher for this fingerprint
    state = json.loads(run_file.read_text())
    if state.get("mlflow_run_id"):
        with stage_run("train", prof.tracking.experiment, run_id=state["mlflow_run_id"]) as run:
            yield run
        return
    params = {
        "profile": job["profile_name"], "models": prof.models.model_dump(mode="json"),
        "model": prof.model.model_dump(mode="json"), "train": prof.train.model_dump(mode="json"),
        "data": {"root": prof.data.root, "rows": n_rows, "rows_truncated": enc.truncated,
                 "rows_skipped_too_long": enc.skipped, "row_files": job["row_files"]},
        "schedule": {"total_steps": total, "steps_per_epoch": steps_per_epoch},
        "deepspeed_config_file": job["deepspeed_template"],
    }
    tags = {"desta.fingerprint": job["fingerprint"], "desta.rows_sha256": job["rows_sha256"],
            "desta.profile": job["profile_name"]}
    with stage_run("train", prof.tracking.experiment, params=params, tags=tags) as run:
        run.log_dict(job["deepspeed"], "deepspeed_config.json")
        run.log_lineage()
        _write_json(run_file, {**state, "mlflow_run_id": run.run_id})
        yield run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--job", required=True, type=Path)
    args = parser.parse_args(argv)
    exit_with_parent()
    job = json.loads(args.job.read_text())
    rank = int(os.environ.get("RANK", 0))
    errors = Path(job["out"]) / "errors"
    from components.train.data import TrainDataError

    try:
        return run(job)
    except BaseException as err:  # noqa: BLE001 -- every failure is reported to the launcher, then re-raised as a code
        code = EXIT_NAN if isinstance(err, NaNLoss) else EXIT_DATA if isinstance(err, TrainDataError) else 1
        errors.mkdir(parents=True, exist_ok=True)
        _write_json(errors / f"rank{rank}.json", {
            "rank": rank, "type": type(err).__name__, "message": str(err), "code": code,
            "traceback": traceback.format_exc()[-4000:]})
        print(f"[train rank {rank}] {type(err).__name__}: {err}", file=sys.stderr, flush=True)
        if isinstance(err, KeyboardInterrupt):
            raise
        return code


if __name__ == "__main__":
    sys.exit(main())

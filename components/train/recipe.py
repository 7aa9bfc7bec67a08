"""What one training rank does, phase by phase: a torchtune-style recipe that `worker.run` drives.

Every rank builds the model and the batch plan, DeepSpeed runs ZeRO over the trainable weights,
rank 0 alone writes history/metrics/export and talks to MLflow.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from components import figures
from components.atomic import atomic_write_text
from components.train.checkpoints import latest_tag, prune, save

LOSS_FIGURE = "figures/loss.png"

_T0 = time.perf_counter()  # the rank's start (worker imports this first): "[train] N s" lines count from it


class NaNLoss(RuntimeError):
    pass


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def step_seed(seed: int, step: int, micro: int, rank: int) -> int:
    """Dropout RNG per (step, micro-batch, rank): a resumed run draws the same masks."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{step}/{micro}/{rank}".encode()).digest()[:7], "big")


def _write_json(path: Path, data: Any) -> None:
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


@contextmanager
def _tracking(job: dict[str, Any], prof: Any, out: Path, enc: Any, n_rows: int, total: int, steps_per_epoch: int):
    """Rank 0's MLflow run: a new one, or the interrupted one this run continues (run.json)."""
    from components.lineage import log_stage_lineage
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
        log_stage_lineage(run, "train")
        _write_json(run_file, {**state, "mlflow_run_id": run.run_id})
        yield run


class TrainRecipe:
    """One rank's training, one method per phase (after torchtune's recipes); `run` calls them in order."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.tracker: Any = None  # rank 0's MLflow run inside `tracking`, when tracked

    def _log(self, name: str) -> None:
        """A timed progress line (rank 0 only)."""
        if self.rank == 0:
            print(f"[train] {time.perf_counter() - _T0:6.1f} s  {name}", flush=True)

    def setup(self) -> None:
        """Every phase before the first step."""
        for phase in (self._setup_distributed, self._setup_model, self._setup_data, self._setup_state_stats,
                      self._setup_engine, self._resume):
            phase()
        self.t_start = time.perf_counter()  # wall_seconds_this_launch counts from here

    def _setup_distributed(self) -> None:
        """Process group, this rank's device and threads, the profile."""
        # Every import before the process group and any seeding, as always (the scheduler's import alone loads
        # accelerate and ~2000 modules); later phases re-import from the module cache.
        import deepspeed
        import deepspeed.comm as dist
        import torch
        from transformers import get_cosine_schedule_with_warmup  # noqa: F401

        from components.config import Profile
        from components.model import DestaModel, DestaSpec  # noqa: F401
        from components.model import prompt as P  # noqa: F401
        from components.model.encoder import EncoderCache  # noqa: F401
        from components.train import data as D  # noqa: F401
        from components.train.dsconfig import zero_stage
        from components.train.launch import threads_per_rank

        self.cpu = cpu = self.job["device"] == "cpu"
        if cpu:
            # DeepSpeed JIT-builds its shared-memory all-reduce op (used only by inference tensor parallelism)
            # at every start, under torch's lock file; a rank killed inside that left the lock behind, and every
            # later start waited on it forever (CI hung so). Training all-reduces through gloo: skip the op.
            deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
        deepspeed.init_distributed(dist_backend="gloo" if cpu else "nccl")
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self._log("process group up")
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", self.world))
        if cpu:
            torch.set_num_threads(threads_per_rank(local_world))
            self.device = torch.device("cpu")
        else:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(self.device)
        self.prof = Profile(**self.job["profile"])
        self.cfg = self.prof.train
        self.out, self.ckpt_dir = Path(self.job["out"]), Path(self.job["out"]) / "checkpoints"
        self.data_root = Path(self.prof.data.root)
        self.stage = zero_stage(self.job["deepspeed"])

    def _setup_model(self) -> None:
        """Backbones and connector on this rank's device; rank 0 notes the frozen weights' digest."""
        import torch

        from components.model import DestaModel, DestaSpec

        torch.manual_seed(self.cfg.seed)  # identical connector init on every rank (ZeRO-3 partitions local copies)
        self.model = model = DestaModel.from_backbones(DestaSpec.from_profile(self.prof), self.cfg.precision,
                                                       with_decoder=False, device=self.device.type)
        model.detach_whisper()
        model.whisper.to(self.device)
        model.to(self.device)
        model.reuse_frozen_head, model.loss_average = self.cfg.reuse_frozen_head, self.cfg.loss_average  # see forward
        self.frozen_before = model.frozen_digest() if self.rank == 0 else None
        self._log("backbones loaded")

    def _setup_data(self) -> None:
        """Rows, their token sequences and the batch plan; rows making no full step are a data error."""
        from components.train import data as D

        cfg, prof = self.cfg, self.prof
        rows = D.iter_rows([Path(f) for f in self.job["row_files"]])  # streamed: only the packed tokens stay
        # Each rank tokenises its share of the chunks; the shares are exchanged, so every rank holds the whole.
        share = D.encode_rows(rows, self.model.tokenizer, prof.model.prompt_size, cfg.max_length,
                              prof.model.max_transcript_tokens, part=(self.rank, self.world))
        if self.world > 1:
            import deepspeed.comm as dist

            shares: list[Any] = [None] * self.world
            dist.all_gather_object(shares, share)
            share = D.EncodedRows.merged(shares)
            del shares
        self.enc = enc = share
        self._log(f"{len(enc.refs)} rows tokenised ({self.world} shares)")
        self.plan = D.Plan(cfg.batch_size, self.world, cfg.grad_accum, cfg.seed)
        self.clips = [tuple(r) for r in enc.refs] if cfg.pack_clip_rows else None  # rows about the same clips
        self.steps_per_epoch = len(self.plan.epoch(enc.lengths, 0, self.clips))
        self.total = D.total_steps(self.steps_per_epoch, cfg.epochs, cfg.max_steps)
        if self.total == 0:
            raise D.TrainDataError(
                f"{len(enc.refs) - enc.skipped} usable rows make no full optimizer step of "
                f"{cfg.batch_size} per rank x {self.world} ranks x {cfg.grad_accum} accumulation")
        self.samples_per_step = cfg.batch_size * cfg.grad_accum * self.world

    def _setup_state_stats(self) -> None:
        """The encoder-states source (cached when asked) and the connector's input statistics."""
        from components.model.encoder import AudioStates, EncoderCache
        from components.train import data as D

        job, prof, enc, model = self.job, self.prof, self.enc, self.model
        cache = None
        if job.get("encoder_cache"):
            cache = EncoderCache(Path(job["encoder_cache"]), job["whisper_digest"], prof.model.encoder_layers,
                                 model.states_dtype)
        self.audio = AudioStates(model.encode, self.data_root, cache)
        if prof.model.normalize_states:  # every rank computes the same statistics from the same clips
            picked = D.sample_refs([r for n, r in zip(enc.lengths, enc.refs) if n], prof.model.state_stats_clips)
            clips = model.fit_state_stats(self.audio(picked[i : i + 8]) for i in range(0, len(picked), 8))
            self._log(f"connector input statistics from {clips} training clips")

    def _setup_engine(self) -> None:
        """The DeepSpeed engine over the trainable weights, with the warmup-cosine schedule."""
        import deepspeed
        from transformers import get_cosine_schedule_with_warmup

        cfg, model, enc = self.cfg, self.model, self.enc
        if self.stage == 3:  # queries are read directly in Connector.forward, not through a submodule call
            for p in model.connector.layer_prompts:
                deepspeed.zero.register_external_parameter(model.connector, p)
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.engine, _, _, self.scheduler = deepspeed.initialize(
            model=model, model_parameters=self.trainable, config=self.job["deepspeed"],
            lr_scheduler=lambda opt: get_cosine_schedule_with_warmup(opt, cfg.warmup_steps, self.total),
        )
        self._log(f"DeepSpeed ZeRO-{self.stage} engine ready ({len(self.enc.refs)} rows, {self.total} steps)")
        if enc.truncated or enc.skipped:
            self._log(f"rows over max_length {cfg.max_length}: {enc.truncated} truncated, {enc.skipped} skipped "
                      "(too long to keep any response)")

    def _resume(self) -> None:
        """Load the newest complete checkpoint, if any; rank 0 trims the history to it."""
        self.start = 0
        tag = latest_tag(self.ckpt_dir)
        if tag:
            _, client = self.engine.load_checkpoint(str(self.ckpt_dir), tag, load_module_strict=False)
            self.start = int(client["step"])
        self.history_path = path = self.out / "history.jsonl"
        self.history: list[dict[str, Any]] = []
        if self.rank == 0 and path.is_file():  # drop steps a crashed run logged after its last checkpoint
            self.history = [h for h in map(json.loads, path.read_text().splitlines()) if h["step"] <= self.start]
            path.write_text("".join(json.dumps(h) + "\n" for h in self.history))

    @contextmanager
    def tracking(self) -> Iterator[None]:
        """Rank 0's MLflow run (when tracked) around steps, export and registration; all ranks meet at its end."""
        import deepspeed.comm as dist

        track = self.rank == 0 and self.job.get("track")
        with (_tracking(self.job, self.prof, self.out, self.enc, len(self.enc.refs), self.total, self.steps_per_epoch)
              if track else nullcontext()) as self.tracker:
            yield
            dist.barrier()

    def train(self) -> None:
        """The steps left after resume, one epoch's batch plan at a time, checkpointing as configured."""
        self._log(f"starting at step {self.start}")
        self.engine.train()
        epoch_plan: tuple[int, list] = (-1, [])
        for step in range(self.start, self.total):
            epoch, offset = divmod(step, self.steps_per_epoch)
            if epoch_plan[0] != epoch:
                epoch_plan = (epoch, self.plan.epoch(self.enc.lengths, epoch, self.clips))
            self._step(step, epoch, self.plan.mine(epoch_plan[1][offset], self.rank))
            if (step + 1) % self.cfg.checkpoint_every == 0 or step + 1 == self.total:
                self.save_checkpoint(step + 1)
        self._log("steps done")

    def _step(self, step: int, epoch: int, batches: list[list[int]]) -> None:
        """One optimizer step over this rank's micro-batches; all ranks stop on a non-finite loss."""
        import deepspeed.comm as dist
        import torch
        from torch.nn.attention import SDPBackend, sdpa_kernel

        from components.train import data as D

        engine, device, enc, audio = self.engine, self.device, self.enc, self.audio
        t0 = time.perf_counter()
        lr = self.scheduler.get_last_lr()[0]  # the rate this step uses
        loss_sum, encoded0, tokens = 0.0, audio.encoded, 0
        for micro, idx in enumerate(batches):
            torch.manual_seed(step_seed(self.cfg.seed, step, micro, self.rank))
            batch, refs = D.micro_batch(enc, idx, self.model.tokenizer.pad_token_id, self.cfg.pack_clip_rows)
            tokens += int(batch["attention_mask"].sum())  # real tokens in the batch (packed: shared ones once)
            batch = {k: v.to(device) for k, v in batch.items()}
            states, frames = audio(refs)
            # The attention kernel is chosen in the forward (train.attention_kernel); its backward follows.
            with sdpa_kernel(SDPBackend.MATH) if self.cfg.attention_kernel == "math" else nullcontext():
                loss = engine(audio_states=states.to(device), audio_frames=frames, **batch).loss
            bad = torch.tensor([0.0 if torch.isfinite(loss).item() else 1.0], device=device)
            dist.all_reduce(bad)
            if bad.item() > 0:
                raise NaNLoss(f"loss is not finite at step {step + 1} (micro-batch {micro}); stopped. "
                              f"The last good checkpoint is kept: {latest_tag(self.ckpt_dir) or 'none yet'}")
            engine.backward(loss)
            engine.step()
            loss_sum += float(loss.detach())
        gpu_peak = torch.cuda.max_memory_allocated(device) / 2**20 if not self.cpu else 0.0
        stats = torch.tensor([loss_sum / len(batches), peak_rss_mb(), float(audio.encoded - encoded0), gpu_peak, tokens],
                             device=device)
        gathered = [torch.zeros_like(stats) for _ in range(self.world)]
        dist.all_gather(gathered, stats)
        seconds = time.perf_counter() - t0
        if self.rank == 0:
            self._log_step(step, epoch, lr, seconds, gathered)

    def _log_step(self, step: int, epoch: int, lr: float, seconds: float, gathered: list[Any]) -> None:
        """Rank 0: the step's history row, progress line and (every `log_every`) MLflow metrics."""
        world, total = self.world, self.total
        row = {"step": step + 1, "epoch": epoch, "loss": sum(float(g[0]) for g in gathered) / world, "lr": lr,
               "samples_per_s": self.samples_per_step / seconds, "step_seconds": seconds,
               "peak_rss_mb": [round(float(g[1]), 1) for g in gathered],
               "encoded_clips": int(sum(float(g[2]) for g in gathered)), "tokens": int(sum(float(g[4]) for g in gathered))}
        if not self.cpu:
            row["peak_gpu_mb"] = [round(float(g[3]), 1) for g in gathered]
        norm = self.engine.get_global_grad_norm()
        if norm is not None and math.isfinite(float(norm)):
            row["grad_norm"] = float(norm)
        self.history.append(row)
        with open(self.history_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"[train] step {step + 1}/{total} loss {row['loss']:.4f} lr {lr:.2e} "
              f"{row['samples_per_s']:.1f} samples/s", flush=True)
        if self.tracker and ((step + 1) % self.cfg.log_every == 0 or step + 1 == total):
            self.tracker.log_metrics({"loss": row["loss"], "lr": lr, "samples_per_s": row["samples_per_s"],
                                      "peak_rss_mb": max(row["peak_rss_mb"]),
                                      **{f"peak_rss_mb.rank{r}": v for r, v in enumerate(row["peak_rss_mb"])},
                                      **{f"peak_gpu_mb.rank{r}": v for r, v in enumerate(row.get("peak_gpu_mb", []))}},
                                     step=step + 1)

    def save_checkpoint(self, step: int) -> None:
        """DeepSpeed checkpoint after `step` steps (trainable weights, optimizer, schedule); rank 0 prunes old ones."""
        import deepspeed.comm as dist

        save(self.engine, self.ckpt_dir, step, {"step": step, "fingerprint": self.job["fingerprint"]})
        dist.barrier()
        if self.rank == 0:
            prune(self.ckpt_dir, self.cfg.keep_checkpoints)

    def export(self) -> None:
        """Rank 0 writes the model (trainable weights only), metrics.json and the loss plot."""
        import deepspeed

        model, rank, job, enc, history, start = self.model, self.rank, self.job, self.enc, self.history, self.start
        # Every rank gathers the ZeRO-3 partitions; the frozen backbones must be bit-identical to what was loaded.
        gather = deepspeed.zero.GatheredParameters if self.stage == 3 else None
        with gather(self.trainable, modifier_rank=None) if gather else nullcontext():
            state = model.trainable_state_dict() if rank == 0 else None
        frozen = [p for p in model.parameters() if not p.requires_grad]
        with gather(frozen, modifier_rank=None) if gather else nullcontext():
            frozen_after = model.frozen_digest() if rank == 0 else None
        if rank != 0:
            return
        if frozen_after != self.frozen_before:
            raise RuntimeError("frozen backbone weights changed during training (digest mismatch)")
        wall = time.perf_counter() - self.t_start
        self.summary = summary = {
            **_summary(history), "rows": len(self.enc.refs), "rows_truncated": enc.truncated,
            "rows_skipped_too_long": enc.skipped, "total_steps": self.total, "resumed_from_step": start,
            "zero_stage": self.stage, "world_size": self.world, "wall_seconds_this_launch": wall,
            "encoder_clips_encoded_this_launch": sum(h["encoded_clips"] for h in history if h["step"] > start),
            "frozen_sha256": frozen_after, "fingerprint": job["fingerprint"]}
        model.save_pretrained(self.out / "model", state, extra={"train": {
            "fingerprint": job["fingerprint"], "steps": self.total, "rows_sha256": job["rows_sha256"],
            "loss_last": summary["loss_last"]}})
        _write_json(self.out / "metrics.json", summary)
        _write_json(self.out / "plots" / "loss.json",  # for `dvc plots` (x: step, y: loss)
                    [{k: h[k] for k in ("step", "loss", "lr", "samples_per_s")} for h in history])
        figures.loss_curve(history, self.out / LOSS_FIGURE)  # the same curve as a PNG, for MLflow
        self._log("model exported")

    def register(self) -> None:
        """Rank 0, when tracked: final metrics and artifacts, then a new version of the registered model."""
        if not self.tracker:
            return
        from components.lineage import log_stage_lineage
        from components.model.serving import log_pyfunc
        from components.stage import numeric

        tracker, job, out, prof = self.tracker, self.job, self.out, self.prof
        tracker.log_metrics({f"final.{k}": float(v) for k, v in numeric(self.summary).items()})
        tracker.log_artifact(self.history_path)
        tracker.log_artifact(out / "metrics.json")
        tracker.log_artifact(out / LOSS_FIGURE, "figures")
        # An MLflow model (pyfunc: audio + instruction -> answer) around the export: loadable and servable.
        logged = log_pyfunc(out / "model")
        log_stage_lineage(tracker, "train")  # again, now that data/train/model exists: records its digest (evaluate's input)
        version = tracker.register_model(None, prof.tracking.registered_model, source=logged.model_uri, tags={
            "fingerprint": job["fingerprint"], "rows_sha256": job["rows_sha256"], "profile": job["profile_name"]})
        tracker.set_tags({"desta.registered_model": prof.tracking.registered_model,
                          "desta.registered_version": version})
        run_file = self.ckpt_dir / "run.json"
        _write_json(run_file, {**json.loads(run_file.read_text()), "registered_version": version})

    def cleanup(self) -> None:
        """Leave the process group."""
        import deepspeed.comm as dist

        self._log("done")
        dist.destroy_process_group()


"""`desta train` on real audio and the embedded models: 2 CPU ranks over gloo, DeepSpeed ZeRO-2/3/offload,
checkpoints, a killed run resumed, NaN stop, MLflow; plus the batch plan, configs and errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from components.config import apply_overrides, load_params
from components.train import data as D
from components.train import dsconfig
from components.train.launch import Nodes, TrainError, command, hostfile_slots, train
from tests.components.model.realdata import build_corpus, write_rows

STEPS, EVERY = 12, 4  # 32 rows / (4 per rank x 2 ranks) = 4 steps per epoch -> 3 epochs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("train-data")
    rows = build_corpus(root)
    return root, write_rows(root / "label" / "shards" / "aqa-000000.jsonl", rows)


@pytest.fixture(scope="module")
def encoder_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("encoder-cache")


def make_params(repo: Path, where: Path, data_root: Path, model: dict | None = None, **train) -> Path:
    """A params.yaml for the tiny profile with absolute paths and the given train/model overrides."""
    where.mkdir(parents=True, exist_ok=True)
    path = where / "params.yaml"
    path.write_text((repo / "params.yaml").read_text())
    base = {"max_steps": STEPS, "epochs": 3, "batch_size": 4, "checkpoint_every": EVERY, "warmup_steps": 3, "lr": 0.001,
            "deepspeed_config": str(repo / "infra/deepspeed/zero2.json")}
    sets = [f"tiny.train.{k}={json.dumps(v)}" for k, v in {**base, **train}.items()]
    sets += [f"tiny.model.{k}={json.dumps(v)}" for k, v in (model or {}).items()]
    sets += [f"tiny.data.root={data_root}", f"tiny.models.whisper={repo / 'models/whisper-tiny.en'}",
             f"tiny.models.llm={repo / 'models/smollm2-135m-instruct'}", "profile=tiny"]
    apply_overrides(path, sets)
    return path


def cli(params: Path, rows: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "components.train.cli", "--params", str(params), "--in", str(rows),
            "--out", str(out), "--encoder-cache", str(cache), *extra]


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Runs training with the default MLflow store in `cwd`, and a stale torch-extensions lock (what a rank
    killed while DeepSpeed JIT-built its shm op leaves): every training here proves it does not wait on it."""
    stale = cwd / "torch-extensions" / "deepspeed_shm_comm" / "lock"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.touch()
    env = {**os.environ, "MLFLOW_TRACKING_URI": "sqlite:///mlflow.db", "TORCH_EXTENSIONS_DIR": str(stale.parents[1])}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def history(out: Path) -> list[dict]:
    path = out / "history.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []


@pytest.fixture(scope="module")
def fresh_model(repo: Path, embedded_models):
    """The untrained model as training builds it (per LoRA setting): frozen digest and trainable names."""
    from components.model import DestaModel, DestaSpec

    seen: dict[bool, dict] = {}

    def build(lora_r: int | None = None) -> dict:
        if lora_r not in seen:
            prof = load_params(repo / "params.yaml").profiles["tiny"]
            cfg = prof.model if lora_r is None else prof.model.model_copy(
                update={"lora": prof.model.lora.model_copy(update={"enabled": True, "r": lora_r})})
            model = DestaModel.from_backbones(DestaSpec(prof.models.whisper, prof.models.llm, cfg), with_decoder=False)
            model.detach_whisper()
            seen[lora_r] = {"frozen": model.frozen_digest(),  # what the export holds: weights + input statistics
                            "trainable": set(model.trainable_state_dict())}
        return seen[lora_r]

    return build


@pytest.fixture(scope="module")
def reference(repo: Path, corpus, encoder_cache: Path, tmp_path_factory: pytest.TempPathFactory, embedded_models):
    """One uninterrupted ZeRO-2 run of STEPS steps on 2 ranks, tracked in MLflow (sqlite in its dir)."""
    root, rows = corpus
    work = tmp_path_factory.mktemp("reference")
    params = make_params(repo, work, root)
    t0 = time.perf_counter()
    res = run_cli(cli(params, rows, work / "out", encoder_cache), work)
    assert res.returncode == 0, res.stderr[-3000:]
    return {"work": work, "out": work / "out", "seconds": time.perf_counter() - t0, "stderr": res.stderr,
            "stdout": res.stdout, "rows": rows}


# ---- configs, launcher line, data errors (no ranks started; the batch plan: test_plan.py) ------------

def test_a_label_dir_is_read_only_as_its_finished_run_left_it(tmp_path: Path) -> None:
    """Shards without `shards/provenance.json` are an unfinished label run (killed, disk full): refused;
    with it, exactly the listed shards are read (a stray .jsonl beside them is not)."""
    shards = tmp_path / "label" / "shards"
    shards.mkdir(parents=True)
    (shards / "label-000000.jsonl").write_text("{}\n")
    with pytest.raises(D.TrainDataError, match=r"unfinished label run .* re-run `desta label`"):
        D.row_files(tmp_path / "label")
    (shards / "provenance.json").write_text(json.dumps({"shards": {"label-000000.jsonl": {}, "label-000001.jsonl": {}}}))
    with pytest.raises(D.TrainDataError, match=r"missing \(label-000001.jsonl\)"):
        D.row_files(tmp_path / "label")
    (shards / "label-000001.jsonl").write_text("{}\n")
    (shards / "stray.jsonl").write_text("{}\n")
    assert [f.name for f in D.row_files(tmp_path / "label")] == ["label-000000.jsonl", "label-000001.jsonl"]
    assert D.row_files(shards / "stray.jsonl") == [shards / "stray.jsonl"]  # a file is taken as given


def test_deepspeed_configs_take_params(repo: Path) -> None:
    t = load_params(repo / "params.yaml").profiles["tiny"].train
    for name in ("zero0", "zero2", "zero3", "zero2_offload"):
        cfg = dsconfig.build(repo / f"infra/deepspeed/{name}.json", t, world=2)
        assert cfg["train_batch_size"] == t.batch_size * t.grad_accum * 2
        assert cfg["gradient_clipping"] == t.grad_clip
        assert cfg["optimizer"]["params"] | {} == {"lr": t.lr, "betas": list(t.betas), "eps": 1e-8,
                                                   "weight_decay": t.weight_decay, "torch_adam": True}
        assert "bf16" not in cfg and "fp16" not in cfg  # bf16 = autocast in the model, fp32 master weights
        assert dsconfig.zero_stage(cfg) == {"zero0": 0, "zero2": 2, "zero3": 3, "zero2_offload": 2}[name]
        assert cfg.get("zero_force_ds_cpu_optimizer", True) is (name != "zero2_offload")
    fp16 = dsconfig.build(repo / "infra/deepspeed/zero2.json", t.model_copy(update={"precision": "fp16"}), world=8)
    assert fp16["fp16"]["enabled"] and fp16["train_batch_size"] == t.batch_size * 8


def test_launcher_lines(repo: Path, tmp_path: Path) -> None:
    prof = load_params(repo / "params.yaml").profiles["tiny"]
    line = command(tmp_path / "job.json", prof)
    assert line[:3] == [sys.executable, "-m", "components.train.torchrun"]  # torchrun, minus its traceback
    assert line[line.index("--nproc_per_node") + 1] == "2" and line[-3:] == ["components.train.worker", "--job", str(tmp_path / "job.json")]
    assert "--standalone" in line and "--master_port" not in line  # torchrun binds its own free port: no race
    two = command(tmp_path / "job.json", prof, Nodes(2, 1, "10.0.0.1", 29400))
    assert "--standalone" not in two and two[two.index("--master_port") + 1] == "29400" and "10.0.0.1" in two
    hosts = tmp_path / "hostfile"
    hosts.write_text("node-a slots=8\nnode-b slots=8  # second node\n")
    assert hostfile_slots(hosts) == 16
    multi = command(tmp_path / "job.json", prof.model_copy(update={"train": prof.train.model_copy(update={"hostfile": str(hosts)})}))
    assert Path(multi[0]).name == "deepspeed" and multi[1:3] == ["--hostfile", str(hosts)] and "--module" in multi


def test_clear_errors_before_any_rank_starts(repo: Path, corpus, tmp_path: Path) -> None:
    root, rows = corpus
    prof = load_params(make_params(repo, tmp_path, root)).active
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TrainError, match="no .jsonl files"):
        train(prof, "tiny", empty, tmp_path / "out")
    (empty / "rows.jsonl").write_text("\n")
    with pytest.raises(TrainError, match="no training rows"):
        train(prof, "tiny", empty / "rows.jsonl", tmp_path / "out")
    good = [json.loads(x) for x in rows.read_text().splitlines()]
    bad = json.loads(json.dumps(good[0]))
    bad["messages"][1]["audios"][0]["audio"] = "ingest/shards/shard-000000.tar/not-there.flac"
    write_rows(tmp_path / "missing.jsonl", good[:3] + [bad])
    with pytest.raises(TrainError, match=r"(?s)1 audio reference\(s\) missing .*not-there\.flac"):
        train(prof, "tiny", tmp_path / "missing.jsonl", tmp_path / "out")
    write_rows(tmp_path / "badrow.jsonl", [{"id": "x", "messages": []}])
    with pytest.raises(TrainError, match=r"badrow\.jsonl:1: not a DeSTA-AQA5M row"):
        train(prof, "tiny", tmp_path / "badrow.jsonl", tmp_path / "out")
    # the same through the CLI: a non-zero exit and the reason, no traceback
    res = run_cli(cli(make_params(repo, tmp_path, root), tmp_path / "missing.jsonl", tmp_path / "out", tmp_path / "c"), tmp_path)
    assert res.returncode == 1 and "not-there.flac" in res.stderr and "Traceback" not in res.stderr


def test_over_long_rows_are_counted_not_fatal(repo: Path, corpus, embedded_models) -> None:
    from transformers import AutoTokenizer

    rows = D.read_rows([corpus[1]])
    tok = AutoTokenizer.from_pretrained(repo / "models/smollm2-135m-instruct")
    enc = D.encode_rows(rows, tok, prompt_size=16, max_length=64, max_transcript_tokens=100)
    assert enc.truncated > 0 and enc.skipped == 0 and max(enc.lengths) <= 64
    tight = D.encode_rows(rows, tok, prompt_size=16, max_length=40, max_transcript_tokens=100)
    assert tight.skipped == len(rows) and all(x is None for x in tight.examples)


def test_ranks_shares_of_the_tokenisation_merge_into_the_whole(repo: Path, corpus, embedded_models) -> None:
    """Each rank tokenises every n-th chunk of rows (train's recipe exchanges the shares): the merged shares are
    the one-process encoding, token for token, for 2 and 3 ranks and a last chunk cut short."""
    from transformers import AutoTokenizer

    rows = D.read_rows([corpus[1]])[:23]
    tok = AutoTokenizer.from_pretrained(repo / "models/smollm2-135m-instruct")
    args = dict(prompt_size=16, max_length=64, max_transcript_tokens=100, chunk=4)
    whole = D.encode_rows(rows, tok, **args)
    for n in (2, 3):
        shares = [D.encode_rows(iter(rows), tok, **args, part=(k, n)) for k in range(n)]
        assert sum(len(s.refs) for s in shares) == len(rows) and all(len(s.refs) < len(rows) for s in shares)
        merged = D.EncodedRows.merged(shares)
        assert list(merged.examples) == list(whole.examples) and merged.refs == whole.refs
        assert (merged.lengths, merged.truncated, merged.skipped) == (whole.lengths, whole.truncated, whole.skipped)


# ---- real training, 2 ranks -----------------------------------------------------------------------

def test_training_learns_exports_trainable_only_and_tracks(reference, fresh_model) -> None:
    from mlflow.tracking import MlflowClient
    from safetensors.torch import load_file

    out = reference["out"]
    h = history(out)
    assert [r["step"] for r in h] == list(range(1, STEPS + 1))
    epoch = STEPS // 3  # the same 32 rows every epoch: compare the first and last epoch's mean loss
    first, last = (sum(r["loss"] for r in h[:epoch]) / epoch, sum(r["loss"] for r in h[-epoch:]) / epoch)
    assert last < 0.8 * first, (first, last)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["zero_stage"] == 2 and metrics["steps"] == STEPS
    assert metrics["frozen_sha256"] == fresh_model()["frozen"]  # backbones bit-identical after training
    exported = load_file(str(out / "model" / "model.safetensors"))
    assert set(exported) == fresh_model()["trainable"]
    # the connector's input statistics were fitted on the training clips (identity = not fitted)
    rows = [json.loads(x) for x in reference["rows"].read_text().splitlines()]
    clips = {a["audio"] for r in rows for m in r["messages"] for a in m.get("audios", [])}
    assert f"connector input statistics from {min(len(clips), 64)} training clips" in reference["stdout"]
    assert not torch.equal(exported["connector.state_std"], torch.ones_like(exported["connector.state_std"]))
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == ["step-00000008", "step-00000012"]

    client = MlflowClient(f"sqlite:///{reference['work'] / 'mlflow.db'}")
    run_id = json.loads((out / "checkpoints" / "run.json").read_text())["mlflow_run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["desta.stage"] == "train"
    assert run.data.params["train.lr"] == "0.001" and run.data.params["model.prompt_size"] == "16"
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == list(range(1, STEPS + 1))
    for name in ("lr", "samples_per_s", "peak_rss_mb.rank0", "peak_rss_mb.rank1"):
        assert len(client.get_metric_history(run_id, name)) == STEPS
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"deepspeed_config.json", "history.jsonl", "metrics.json"} <= artifacts
    version = client.get_model_version("desta-audio-tiny", run.data.tags["desta.registered_version"])
    assert version.run_id == run_id and version.tags["fingerprint"] == metrics["fingerprint"]
    # the registered version is an MLflow model (pyfunc) that run logged, holding the export's files
    logged = client.get_logged_model(version.source.removeprefix("models:/"))
    assert version.source.startswith("models:/m-") and logged.source_run_id == run_id
    import mlflow.artifacts

    got = Path(mlflow.artifacts.download_artifacts(f"{logged.artifact_location}", dst_path=str(reference["work"] / "dl")))
    assert "python_function" in (got / "MLmodel").read_text()
    assert (got / "artifacts" / "model" / "model.safetensors").read_bytes() == (out / "model" / "model.safetensors").read_bytes()


def test_packed_clip_rows_train(repo: Path, corpus, encoder_cache: Path, reference, tmp_path: Path) -> None:
    """train.pack_clip_rows on 2 ranks: each clip's two rows run its audio and transcript once (fewer tokens
    an epoch than the reference run, on the same rows); it learns."""
    root, rows = corpus
    params = make_params(repo, tmp_path, root, pack_clip_rows=True)
    res = run_cli(cli(params, rows, tmp_path / "out", encoder_cache, "--no-track"), tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    h = history(tmp_path / "out")
    assert [r["step"] for r in h] == list(range(1, STEPS + 1))
    epoch = STEPS // 3
    first, last = (sum(r["loss"] for r in h[:epoch]) / epoch, sum(r["loss"] for r in h[-epoch:]) / epoch)
    assert last < 0.8 * first, (first, last)
    ref = history(reference["out"])
    packed, plain = (sum(r["tokens"] for r in x[:epoch]) for x in (h, ref))  # an epoch: every row once
    assert packed < 0.85 * plain, (packed, plain)


def test_killed_run_resumes_and_continues_the_curve(repo: Path, corpus, encoder_cache: Path, reference,
                                                   tmp_path: Path) -> None:
    root, rows = corpus
    params = make_params(repo, tmp_path, root)
    out = tmp_path / "out"
    env = {**os.environ, "MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"}
    proc = subprocess.Popen(cli(params, rows, out, encoder_cache), cwd=tmp_path, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and len(history(out)) < EVERY + 1:
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher, torchrun and both ranks, mid-step
    proc.wait()
    killed_at = len(history(out))
    run_id = json.loads((out / "checkpoints" / "run.json").read_text())["mlflow_run_id"]
    assert not (out / "model").exists()

    res = run_cli(cli(params, rows, out, encoder_cache), tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_step"] in (EVERY, 2 * EVERY) and metrics["resumed_from_step"] < killed_at + 1
    assert f"resumed from {metrics['resumed_from_step']}" in " ".join(res.stderr.split())
    got, ref = history(out), history(reference["out"])
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))
    for a, b in zip(got, ref):  # the same curve as the uninterrupted run
        assert abs(a["loss"] - b["loss"]) <= 0.02 * max(1.0, abs(b["loss"])), (a["step"], a["loss"], b["loss"])
        assert a["lr"] == pytest.approx(b["lr"])
    assert json.loads((out / "checkpoints" / "run.json").read_text())["mlflow_run_id"] == run_id  # same MLflow run
    from safetensors.torch import load_file

    resumed, straight = (load_file(str(o / "model" / "model.safetensors")) for o in (out, reference["out"]))
    assert torch.equal(resumed["connector.state_mean"], straight["connector.state_mean"])  # same clips, same statistics

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    steps = {m.step for m in client.get_metric_history(run_id, "loss")}
    assert steps == set(range(1, STEPS + 1)) and client.get_run(run_id).info.status == "FINISHED"
    # a third call with the same params and rows has nothing left to do
    again = run_cli(cli(params, rows, out, encoder_cache, "--no-track"), tmp_path)
    assert again.returncode == 0 and "already done" in again.stderr


@pytest.mark.parametrize(("template", "train_kw", "lora_r"), [
    ("zero3.json", {}, 4),  # ZeRO-3 partitions the frozen LLM too; LoRA adapters train and export
    ("zero2_offload.json", {"batch_size": 2, "grad_accum": 2}, None),  # optimizer on CPU, accumulation
])
def test_zero3_and_offload_train(template: str, train_kw: dict, lora_r: int | None, repo: Path, corpus,
                                 encoder_cache: Path, fresh_model, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    root, rows = corpus
    params = make_params(repo, tmp_path, root, max_steps=3, deepspeed_config=str(repo / "infra/deepspeed" / template),
                         model={"lora.enabled": True, "lora.r": lora_r} if lora_r else None, **train_kw)
    res = run_cli(cli(params, rows, tmp_path / "out", encoder_cache, "--no-track"), tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["zero_stage"] == (3 if template == "zero3.json" else 2)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in history(tmp_path / "out"))
    expected = fresh_model(lora_r)
    assert metrics["frozen_sha256"] == expected["frozen"]
    exported = load_file(str(tmp_path / "out" / "model" / "model.safetensors"))
    assert set(exported) == expected["trainable"]
    if lora_r:  # the adapters moved away from their zero init (B starts at 0)
        assert any("lora_B" in k and v.abs().sum() > 0 for k, v in exported.items())


def test_nan_loss_stops_keeps_the_last_good_checkpoint_and_resumes(repo: Path, corpus, tmp_path: Path,
                                                                    embedded_models) -> None:
    """Corrupted cached encoder states (NaN) mid-run: every rank stops, nothing newer is saved; with
    the cache repaired, a re-run (untracked) resumes from the kept checkpoint and finishes."""
    from safetensors.torch import load_file, save_file

    root, rows = corpus
    cache = tmp_path / "cache"
    params = make_params(repo, tmp_path, root, checkpoint_every=2, max_steps=8)
    out = tmp_path / "out"
    env = {**os.environ, "MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"}
    proc = subprocess.Popen(cli(params, rows, out, cache, "--no-track"), cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while proc.poll() is None and len(history(out)) < 3:
        if time.monotonic() > deadline:  # stop it (SIGTERM: the launcher ends its ranks) rather than hang
            proc.terminate()
            proc.communicate(timeout=120)
            pytest.fail("training logged fewer than 3 steps within 240 s")
        time.sleep(0.1)
    assert proc.poll() is None, "training ended before its cache could be poisoned"
    poisoned = list(cache.rglob("*.safetensors"))
    for f in poisoned:
        states = load_file(str(f))["states"]
        save_file({"states": torch.full_like(states, float("nan"))}, str(f))
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1
    text = " ".join(stderr.split())
    assert "NaNLoss: loss is not finite at step" in text
    nan_step = int(text.split("not finite at step ")[1].split()[0])
    kept = (out / "checkpoints" / "latest").read_text().strip()
    assert kept == f"step-{(nan_step - 1) // 2 * 2:08d}" and f"The last good checkpoint is kept: {kept}" in text
    assert max(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("step-*")) < nan_step
    assert all(r["step"] < nan_step for r in history(out)) and not (out / "model").exists()
    assert {json.loads(p.read_text())["code"] for p in (out / "errors").glob("rank*.json")} == {3}

    for f in poisoned:
        f.unlink()
    res = run_cli(cli(params, rows, out, cache, "--no-track"), tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((out / "metrics.json").read_text())["resumed_from_step"] == int(kept.split("-")[1])
    assert [r["step"] for r in history(out)] == list(range(1, 9))


def test_packed_rows_give_back_every_encoded_row_and_the_skipped_ones() -> None:
    """Training keeps its tokens packed (flat arrays, not a list per row): each row comes back equal to
    what was appended, a skipped row as None, from either end; past the end is an IndexError."""
    from components.model import prompt as P

    rows = [P.Encoded([5, 49151, 7], [-100, -100, 7], [False, True, False], 1),
            None, P.Encoded([], [], [], 0), P.Encoded([1] * 300, [-100] * 299 + [2], [True] * 300, 2, truncated=True)]
    packed = D.Packed()
    for r in rows:
        packed.append(r)
    assert len(packed) == 4 and list(packed) == rows and packed[-1] == rows[-1] and packed[-3] is None
    with pytest.raises(IndexError):
        packed[4]

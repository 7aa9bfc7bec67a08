"""The label stage on the real embedded LLM: schema, determinism, cache behaviour, generator change."""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

import components.label.units as units_mod
from components.config import ModelsConfig
from components.label.attributes import seed_value, stated_values
from components.label.choices import CHOICES, SUFFIX
from components.label.generator import GeneratorMismatchWarning
from components.label.pool import load_pool
from components.label.rows import ROW_KEYS
from components.label.run import PROVENANCE, QUARANTINE_DIR, STATS, label
from tests.components.label.helpers import label_cfg, read_rows, seed_file, seed_rows, shard_bytes, write_jsonl


def test_rows_schema_stats_and_provenance(tmp_path: Path, models: ModelsConfig, hf_backend) -> None:
    seeds = seed_rows(6) + [{**seed_rows(1, start=100)[0], "split": "test"}]
    stats = label(seed_file(tmp_path, seeds), tmp_path / "out", label_cfg(instructions_per_clip=2), models, backend=hf_backend,
                  show_progress=False)
    out = tmp_path / "out"
    rows = read_rows(out)
    quarantined = [json.loads(x) for p in (out / QUARANTINE_DIR).glob("*.jsonl") for x in p.read_text().splitlines()]
    assert stats["clips"] == 6 and stats["clips_skipped_by_split"] == 1  # held-out clips are not labelled
    assert len(rows) + len(quarantined) == 12 == stats["rows_written"] + stats["quarantined"]
    assert rows, "no row passed the filters"
    by_seed = {s["id"]: s for s in seeds}
    for row in rows:
        assert tuple(row) == ROW_KEYS
        clip_id, idx = row["id"].rsplit("-", 1)
        seed = by_seed[clip_id]
        assert idx in ("0", "1") and row["dataset"] == seed["dataset"]
        assert row["seed_description"] == seed["seed_description"]
        assert isinstance(row["response"], str) and row["response"].strip()
        assert row["messages"] == [
            {"role": "system", "content": "Focus on the audio clips and instructions."},
            {"role": "user", "content": f"<|AUDIO|>\n{row['prompt']}",
             "audios": [{"audio": seed["audio"], "text": seed["transcript"]}]},
        ]
    assert len({r["id"] for r in rows}) == len(rows)
    for q in quarantined:
        assert len(q["attempts"]) == 2 and q["reason"] == q["attempts"][-1]["reason"]
    prov = json.loads((out / "shards" / PROVENANCE).read_text())
    assert prov["generator"]["self_generated"] is True and prov["generator"]["digest"].startswith("sha256:")
    assert prov["pool"]["instructions"] >= 100 and len(prov["pool"]["sha256"]) == 64
    assert prov["template"]["system"] and prov["decoding"]["max_new_tokens"] == 24 and prov["seed"] == 0
    assert sum(s["rows"] for s in prov["shards"].values()) == len(rows)
    on_disk = json.loads((out / STATS).read_text())
    for key in ("rows_written", "cache_hits", "generated", "filtered_by_reason", "tokens", "rows_per_s", "tokens_per_s"):
        assert key in on_disk
    assert stats["generated"] == stats["requests"] and stats["cache_hits"] == 0
    assert stats["filtered"] == sum(stats["filtered_by_reason"].values()) >= stats["quarantined"]


def test_same_inputs_give_byte_identical_shards(tmp_path: Path, models: ModelsConfig, hf_backend) -> None:
    seeds = seed_rows(9)
    a = label(seed_file(tmp_path, seeds), tmp_path / "a", label_cfg(), models, backend=hf_backend, show_progress=False)
    b = label(seed_file(tmp_path, seeds), tmp_path / "b", label_cfg(), models, backend=hf_backend, show_progress=False)
    assert a["generated"] == b["generated"] > 0 and b["cache_hits"] == 0  # b really generated again
    assert shard_bytes(tmp_path / "a") == shard_bytes(tmp_path / "b")
    assert len(shard_bytes(tmp_path / "a")) == 3  # two shards (8 + 1 rows) + provenance


def test_cache_noop_incremental_and_decoding_change(tmp_path: Path, models: ModelsConfig, hf_backend,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    out, seeds = tmp_path / "out", seed_rows(10)
    first = label(seed_file(tmp_path, seeds), out, label_cfg(), models, backend=hf_backend, show_progress=False)
    before = shard_bytes(out)
    assert first["generated_by_attempt"][0] == 10

    # Re-run: a no-op that never even loads a model.
    monkeypatch.setattr(units_mod, "make_backend", lambda *a, **k: pytest.fail("model loaded on a no-op re-run"))
    again = label(seed_file(tmp_path, seeds), out, label_cfg(), models, show_progress=False)
    assert again["generated"] == 0 and again["cache_hits"] == again["requests"] == first["requests"]
    assert shard_bytes(out) == before
    monkeypatch.undo()

    # 10 % new clips (appended): only they are generated; untouched shards stay byte-identical.
    new = seed_rows(1, start=10)
    inc = label(seed_file(tmp_path, seeds + new), out, label_cfg(), models, backend=hf_backend, show_progress=False)
    assert inc["generated_by_attempt"][0] == 1
    assert inc["generated"] <= 2  # first attempt + at most one retry
    after = shard_bytes(out)
    assert after["label-000000.jsonl"] == before["label-000000.jsonl"]  # shard of old clips only: untouched
    old_rows = {r["id"]: r for r in read_rows(out)}
    assert all(old_rows[r["id"]] == r for r in (json.loads(x) for x in before["label-000001.jsonl"].decode().splitlines()))

    # A decoding param that only retries use: greedy first attempts all hit, exactly the retries regenerate.
    retries = inc["requests"] - 11  # max_retries=1: one retry request per row filtered at the first attempt
    hot = label(seed_file(tmp_path, seeds + new), out, label_cfg(retry_temperature=0.9), models, backend=hf_backend, show_progress=False)
    assert hot["generated_by_attempt"][0] == 0 and hot["cache_hits"] == 11
    assert hot["generated"] == retries > 0


def test_generator_change_regenerates_everything_and_is_recorded(tmp_path: Path, models: ModelsConfig, llm_dir: Path,
                                                                 hf_backend) -> None:
    seeds = seed_rows(6)
    out = tmp_path / "out"
    cfg = label_cfg(max_retries=0)
    label(seed_file(tmp_path, seeds), out, cfg, models, backend=hf_backend, show_progress=False)

    other = tmp_path / "tiny-llm"  # another generator: a small random Llama with the same tokenizer
    AutoTokenizer.from_pretrained(llm_dir).save_pretrained(other)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, eos_token_id=2, pad_token_id=2,
                                 bos_token_id=1, tie_word_embeddings=True)).save_pretrained(other)
    swapped = ModelsConfig(whisper="unused", llm=models.llm, generator=str(other))
    with pytest.warns(GeneratorMismatchWarning, match="not be self-generated"):
        s = label(seed_file(tmp_path, seeds), out, cfg, swapped, show_progress=False)
    assert s["generated"] == s["requests"] == 6 and s["cache_hits"] == 0 and s["self_generated"] is False
    prov = json.loads((out / "shards" / PROVENANCE).read_text())
    assert prov["generator"]["name"] == str(other) and prov["generator"]["self_generated"] is False

    with warnings.catch_warnings():
        warnings.simplefilter("error", GeneratorMismatchWarning)  # back to the backbone: no warning, all cached
        back = label(seed_file(tmp_path, seeds), out, cfg, models, backend=hf_backend, show_progress=False)
    assert back["generated"] == 0 and back["cache_hits"] == 6


def test_cli_reads_a_seeds_dir(tmp_path: Path, repo: Path, llm_dir: Path) -> None:
    from typer.testing import CliRunner

    from components.label.cli import app

    write_jsonl(tmp_path / "seeds" / "shards" / "seeds-000000.jsonl", seed_rows(3))
    params = tmp_path / "params.yaml"
    raw = __import__("yaml").safe_load((repo / "params.yaml").read_text())
    raw["tiny"]["models"]["llm"] = str(llm_dir)
    raw["tiny"]["label"].update({"max_new_tokens": 16, "max_retries": 0, "batch_size": 4, "threads": 1})
    params.write_text(__import__("yaml").safe_dump(raw))
    res = CliRunner().invoke(app, ["--seeds", str(tmp_path / "seeds"), "--out", str(tmp_path / "out"),
                                   "--params", str(params), "--no-track", "--no-progress"])
    assert res.exit_code == 0, res.output
    stats = json.loads(res.stdout.strip().splitlines()[-1])
    per_clip = raw["tiny"]["label"]["instructions_per_clip"]
    # rows_written counts the choice-format copies too (tiny: label.choice_rows)
    assert stats["clips"] == 3 and stats["rows_written"] - stats["choice_rows"] + stats["quarantined"] == 3 * per_clip


def test_cli_fails_when_no_row_is_written(tmp_path: Path, repo: Path) -> None:
    """Seeds that all sit in the held-out split: nothing to label, so the stage exits 1 naming why (the
    flow and `dvc repro` stop before training on nothing); its stats are written all the same."""
    from typer.testing import CliRunner

    from components.label.cli import app

    write_jsonl(tmp_path / "seeds" / "shards" / "seeds-000000.jsonl",
                [r | {"split": "test"} for r in seed_rows(3)])
    res = CliRunner().invoke(app, ["--seeds", str(tmp_path / "seeds"), "--out", str(tmp_path / "out"),
                                   "--params", str(repo / "params.yaml"), "--no-track", "--no-progress"])
    assert res.exit_code == 1, res.output
    assert "label wrote no rows from 3 seed rows (0 labelled: label.splits ['train']" in " ".join(res.output.split())
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["rows_written"] == 0


def test_units_fan_out_like_label(tmp_path: Path, models: ModelsConfig, hf_backend) -> None:
    """plan_units/run_unit/finalize on a thread pool (as a Prefect task runner would) == label()."""
    import pickle
    from concurrent.futures import ThreadPoolExecutor

    from components.label.run import finalize, run_unit
    from components.label.units import plan_units, prepare_job

    seeds = seed_rows(9)
    label(seed_file(tmp_path, seeds), tmp_path / "a", label_cfg(), models, backend=hf_backend, show_progress=False)
    job = prepare_job(tmp_path / "b", label_cfg(), models, cache_dir=tmp_path / "a" / "cache")
    units = plan_units(seed_file(tmp_path, seeds), job)
    job, units = pickle.loads(pickle.dumps((job, units)))  # what a Dask/Ray runner ships to workers
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda u: run_unit(u, job), units))
    stats = finalize(job, units, results, 1.0)
    assert stats["generated"] == 0 and len(units) == 2
    assert shard_bytes(tmp_path / "b") == shard_bytes(tmp_path / "a")


def test_focus_keeps_only_right_voice_statements(tmp_path: Path, models: ModelsConfig, hf_backend) -> None:
    """label.focus on the real generator: every kept speech answer states the voice as its seed does
    and contradicts none of it; the rest are quarantined with `unfocused` / `missing:<attribute>`."""
    from components.label.attributes import contradicts, mentions, sentences

    seeds = seed_rows(10)
    stats = label(seed_file(tmp_path, seeds), tmp_path / "out", label_cfg(instructions_per_clip=2, focus=True, kinds=None),
                  models, backend=hf_backend, show_progress=False)
    rows = read_rows(tmp_path / "out")
    by_seed = {s["id"]: s for s in seeds}
    speech = [r for r in rows if by_seed[r["id"].rsplit("-", 1)[0]]["kind"] == "speech"]
    for row in speech:
        for sentence in sentences(row["response"]):
            assert mentions(sentence) and not contradicts(sentence, row["seed_description"]), row
    reasons = set(stats["quarantined_by_reason"])
    assert stats["rows_written"] + stats["quarantined"] == 20
    assert reasons & {"unfocused", "missing:Gender", "missing:Pitch", "missing:Speaking speed", "missing:Volume"}
    prov = json.loads((tmp_path / "out" / "shards" / PROVENANCE).read_text())
    assert prov["filters"] == {"focus": True, "max_clips_per_speaker": None, "choice_rows": False, "choice_stated": False,
                              "choice_said": False}



def test_stats_count_kept_rows_per_asked_value(tmp_path: Path, models: ModelsConfig, hf_backend) -> None:
    """A labeller that favours one answer must show in stats: kept rows per asked attribute value."""
    seeds = [s for s in seed_rows(10) if s["kind"] == "speech"]
    cfg = label_cfg(instructions_per_clip=2, focus=True, kinds=["brief"])
    stats = label(seed_file(tmp_path, seeds), tmp_path / "out", cfg, models, cache_dir=tmp_path / "cache", backend=hf_backend,
                  show_progress=False)
    rows = read_rows(tmp_path / "out")
    requires = {i.text: i.requires for i in load_pool().instructions}
    asked = Counter(f"{requires[r['prompt']]}={seed_value(r['seed_description'], requires[r['prompt']])}" for r in rows)
    assert rows and stats["rows_by_asked_value"] == dict(asked)
    stated = Counter(v for r in rows for v in stated_values(r["response"], r["seed_description"]))
    assert stats["rows_by_stated_value"] == dict(stated) and sum(stated.values()) >= len(rows)  # focus: each states one
    assert json.loads((tmp_path / "out" / STATS).read_text())["rows_by_asked_value"] == dict(asked)

    # label.choice_rows: the same answers (cache hits), each followed by its choice-format copy whose
    # response is the seed's value, among options named in the prompt.
    both = label(seed_file(tmp_path, seeds), tmp_path / "choices", cfg.model_copy(update={"choice_rows": True}), models,
                 cache_dir=tmp_path / "cache", backend=hf_backend, show_progress=False)
    with_choices = read_rows(tmp_path / "choices")
    plain = [r for r in with_choices if not r["id"].endswith(SUFFIX)]
    copies = [(prev, r) for prev, r in zip(with_choices, with_choices[1:]) if r["id"].endswith(SUFFIX)]
    assert plain == rows and both["generated"] == 0
    assert copies and both["choice_rows"] == len(copies) == len(with_choices) - len(rows)
    assert both["rows_by_asked_value"] == stats["rows_by_asked_value"]
    for prev, r in copies:
        attribute = requires[prev["prompt"]]
        assert r["id"] == prev["id"] + SUFFIX and r["messages"][1]["audios"] == prev["messages"][1]["audios"]
        assert r["response"] == seed_value(r["seed_description"], attribute)
        assert all(option in r["prompt"] for option in CHOICES[attribute])


def test_choice_stated_teaches_what_kept_answers_state_unasked(tmp_path: Path, models: ModelsConfig, hf_backend) -> None:
    """label.choice_stated: besides the asked attribute's choice row, one choice row per other attribute a
    clip's kept answers state as the seed does, once per clip and attribute; the open answers are unchanged."""
    seeds = [s for s in seed_rows(12) if s["kind"] == "speech"]
    cfg = label_cfg(instructions_per_clip=3, focus=True, kinds=["voice", "gender"], choice_rows=True)
    asked = label(seed_file(tmp_path, seeds), tmp_path / "asked", cfg, models, cache_dir=tmp_path / "cache",
                  backend=hf_backend, show_progress=False)
    both = label(seed_file(tmp_path, seeds), tmp_path / "stated", cfg.model_copy(update={"choice_stated": True}), models,
                 cache_dir=tmp_path / "cache", backend=hf_backend, show_progress=False)
    before, after = read_rows(tmp_path / "asked"), read_rows(tmp_path / "stated")
    assert both["generated"] == 0
    assert [r for r in after if SUFFIX + "-" not in r["id"]] == before  # open and asked choice rows as before
    opened = {r["id"]: r for r in after if SUFFIX not in r["id"]}
    requires = {i.text: i.requires for i in load_pool().instructions}
    stated = [r for r in after if SUFFIX + "-" in r["id"]]
    assert stated and both["choice_rows"] == asked["choice_rows"] + len(stated)
    seen = set()
    for r in stated:
        source, attribute = r["id"].split(SUFFIX + "-")
        attribute = next(a for a in CHOICES if a.lower().replace(" ", "-") == attribute)
        clip = source.rsplit("-", 1)[0]
        assert f"{attribute}={r['response']}" in stated_values(opened[source]["response"], r["seed_description"])
        assert r["response"] == seed_value(r["seed_description"], attribute)
        kept_asked = {requires[o["prompt"]] for o in opened.values() if o["id"].rsplit("-", 1)[0] == clip}
        assert attribute not in kept_asked and (clip, attribute) not in seen
        seen.add((clip, attribute))
    prov = json.loads((tmp_path / "stated" / "shards" / PROVENANCE).read_text())
    assert prov["filters"]["choice_stated"] is True


def test_choice_said_asks_every_clip_what_was_said(tmp_path: Path, models: ModelsConfig, hf_backend) -> None:
    """label.choice_said: every labelled clip with a transcript gets one "what was said" choice row, its
    corpus transcript among three of other clips that read differently, with no generation; the other rows
    are unchanged."""
    from components.text import normalize_transcript

    seeds = [s for s in seed_rows(12) if s["kind"] == "speech"]
    # one unit: its clips' transcripts are the distractors
    cfg = label_cfg(instructions_per_clip=1, focus=True, kinds=["gender"], choice_rows=True, shard_rows=64)
    asked = label(seed_file(tmp_path, seeds), tmp_path / "asked", cfg, models, cache_dir=tmp_path / "cache",
                  backend=hf_backend, show_progress=False)
    both = label(seed_file(tmp_path, seeds), tmp_path / "said", cfg.model_copy(update={"choice_said": True}), models,
                 cache_dir=tmp_path / "cache", backend=hf_backend, show_progress=False)
    before, after = read_rows(tmp_path / "asked"), read_rows(tmp_path / "said")
    said = [r for r in after if r["id"].endswith("-said" + SUFFIX)]
    assert both["generated"] == 0 and [r for r in after if r not in said] == before
    by_id = {s["id"]: s for s in seeds}
    assert sorted(r["id"] for r in said) == sorted(f"{s['id']}-said{SUFFIX}" for s in seeds if s.get("transcript"))
    assert both["choice_rows"] == asked["choice_rows"] + len(said) and len(said) >= 3
    for r in said:
        seed = by_id[r["id"].removesuffix("-said" + SUFFIX)]
        assert r["response"] == seed["transcript"] and r["messages"][1]["audios"][0]["audio"] == seed["audio"]
        options = r["prompt"].split("Choices: ", 1)[1].rsplit(". Choose", 1)[0]
        read = {normalize_transcript(t) for t in {s["transcript"] for s in seeds} if t and t in options}
        assert seed["transcript"] in options and len(read) == 4
    prov = json.loads((tmp_path / "said" / "shards" / PROVENANCE).read_text())
    assert prov["filters"]["choice_said"] is True


def test_model_text_reaches_every_row_and_changes_no_generation(tmp_path: Path, models: ModelsConfig,
                                                                hf_backend) -> None:
    """Seeds with `model_text` (seeds.model_text: whisper) give the model Whisper's words beside the audio in
    every row, choice rows too; the labeller still reads the corpus's transcript in the seed description (all
    cache hits), the answers and choice options are unchanged, and the seeds' digest records the new text."""
    seeds = [s for s in seed_rows(12) if s["kind"] == "speech"]
    heard = [s | {"model_text": s["transcript"].lower().rstrip(".") + " uh"} for s in seeds]
    cfg = label_cfg(instructions_per_clip=1, focus=True, kinds=["gender"], choice_rows=True, choice_said=True,
                    shard_rows=64)
    corpus = label(seed_file(tmp_path, seeds), tmp_path / "corpus", cfg, models, cache_dir=tmp_path / "cache",
                   backend=hf_backend, show_progress=False)
    whisper = label(seed_file(tmp_path, heard), tmp_path / "whisper", cfg, models, cache_dir=tmp_path / "cache",
                    backend=hf_backend, show_progress=False)
    before, after = read_rows(tmp_path / "corpus"), read_rows(tmp_path / "whisper")
    assert whisper["generated"] == 0 and corpus["generated"] > 0 and len(after) == len(before) > len(seeds)
    text = {s["audio"]: s["model_text"] for s in heard}
    for old, new in zip(before, after):
        audio = new["messages"][1]["audios"][0]
        assert audio["text"] == text[audio["audio"]] != old["messages"][1]["audios"][0]["text"]
        assert {k: v for k, v in new.items() if k != "messages"} == {k: v for k, v in old.items() if k != "messages"}
    digests = [json.loads((tmp_path / d / "shards" / PROVENANCE).read_text())["seeds"]["sha256"] for d in ("corpus", "whisper")]
    assert digests[0] != digests[1]

"""Label pieces that need no model: pool, draws, filters, rows, cache keys, config, backend selection."""

from __future__ import annotations

import json
import re
import sys
import types
from collections import Counter
from pathlib import Path

import pytest
import yaml

from components.config import ConfigError, LabelConfig, ModelsConfig, parse_params
from components.label import filters
from components.label.backends import Request
from components.label.cache import Cached, ResponseCache, cache_key
from components.label.pool import DEFAULT_POOL, draw, eligible, load_pool, restrict
from components.label.rows import ROW_KEYS, aqa_row, row_id
from components.label.units import plan_batches
from components.records import DamagedFile
from tests.components.label.helpers import label_cfg, seed_rows, write_jsonl

PAPER_KINDS = {"describe", "summarise", "emotion", "gender", "pitch", "speed", "volume", "sound_event",
               "content", "said", "creative", "reasoning", "format"}
SPEECH_ONLY = {"summarise", "emotion", "gender", "pitch", "speed", "volume", "voice", "content", "said"}


def test_pool_is_large_diverse_and_tagged() -> None:
    pool = load_pool()
    assert len(pool.instructions) >= 100
    kinds = Counter(i.kind for i in pool.instructions)
    assert PAPER_KINDS <= set(kinds), PAPER_KINDS - set(kinds)
    assert len({i.id for i in pool.instructions}) == len({i.text for i in pool.instructions}) == len(pool.instructions)
    assert len(pool.digest) == 64


def test_draw_is_deterministic_distinct_and_fits_the_clip() -> None:
    pool = load_pool()
    rows = seed_rows(50)
    for r in rows:
        a, b = draw(pool, r, 0, 3), draw(pool, r, 0, 3)
        assert a == b and len({i.id for i in a}) == 3
        if r["kind"] == "sound":
            assert not {i.kind for i in a} & SPEECH_ONLY
    other_seed = sum(draw(pool, r, 0, 1) != draw(pool, r, 1, 1) for r in rows)
    assert other_seed > 40  # the seed really changes the draw
    music = {"id": "m", "kind": "music", "transcript": None,
             "seed_description": "[00:00-00:04] (Instrument: Organ, Pitch register: Low, Tempo: Slow, Duration: 4.0)"}
    assert {i.kind for i in eligible(pool, music)} == {"music", "describe", "creative", "reasoning", "format", "duration"}
    assert {i.audio for i in eligible(restrict(pool, ["gender", "sound_event", "music"]), music)} == {"music"}
    no_emotion = {**rows[0], "seed_description": "[00:00-00:02] Hello. (Gender: Male, Duration: 2s)"}
    kinds = {i.kind for i in eligible(pool, no_emotion)}
    assert "emotion" not in kinds and "gender" in kinds and "pitch" not in kinds


def test_growing_the_pool_keeps_most_draws(tmp_path: Path) -> None:
    pool = load_pool()
    extra = {"id": "describe-99", "kind": "describe", "audio": "any", "requires": None, "text": "What is this clip?"}
    grown = load_pool(write_jsonl(tmp_path / "pool.jsonl",
                                  [json.loads(x) for x in DEFAULT_POOL.read_text().splitlines()] + [extra]))
    rows = seed_rows(200)
    changed = sum(draw(pool, r, 0, 1) != draw(grown, r, 0, 1) for r in rows)
    assert changed < 20  # ~1/len(eligible) of clips move to the new instruction; the rest stay cached



@pytest.mark.filterwarnings("ignore:no local copy of generator")  # no generator is loaded here
def test_more_draws_add_instructions_of_a_kind_and_keep_the_first_draws(tmp_path: Path) -> None:
    """label.more_draws: a clip's k draws stay as they were (their answers stay cached), then `n` more of each
    named kind that fits the clip and is not drawn yet, from the whole pool (the kind need not be in
    label.kinds); a clip the kind does not fit gets none; an unknown kind or n < 1 is an error."""
    from components.label.units import plan_units, prepare_job

    models = ModelsConfig(whisper="unused", llm="unused")
    seeds = seed_rows(30)
    path = write_jsonl(tmp_path / "seeds.jsonl", seeds)
    cfg = label_cfg(kinds=["voice", "gender"], instructions_per_clip=3, shard_rows=1000)
    base = prepare_job(tmp_path, cfg, models)
    more = prepare_job(tmp_path, cfg.model_copy(update={"more_draws": {"volume": 2}}), models)
    (unit,), (unit_more,) = plan_units(path, base), plan_units(path, more)
    before, after = base.items(unit), more.items(unit_more)
    assert (unit.size, unit_more.size) == (len(before), len(after))  # the progress total
    volume = {i.id for i in load_pool().instructions if i.kind == "volume"}
    extra = [it for it in after if it not in before]
    assert before == [it for it in after if it.index < 3] and len(after) == len(before) + len(extra)
    speech = [s for s in seeds if s["kind"] == "speech"]
    assert len(extra) == 2 * len(speech) and {it.instruction.id for it in extra} <= volume
    for s in speech:
        mine = [it for it in after if it.seed["id"] == s["id"]]
        assert [it.index for it in mine] == [0, 1, 2, 3, 4] and len({it.instruction.id for it in mine}) == 5
    with pytest.raises(ValueError, match="more_draws"):
        prepare_job(tmp_path, label_cfg(more_draws={"loudness": 1}), models)
    with pytest.raises(Exception):
        label_cfg(more_draws={"volume": 0})

@pytest.mark.parametrize("text,finish,reason", [
    ("The speaker sounds calm and speaks slowly.", "stop", None),
    ("", "stop", "empty"),
    ("  ...  ", "stop", "empty"),
    ("The speaker says that the bus was late and then it", "length", "truncated"),
    ("Based on the seed description, the speaker is male.", "stop", "leak:seed_description"),
    ("The metadata says the speaker is female.", "stop", "leak:metadata"),
    ("At [00:00-00:02] the speaker says hello.", "stop", "leak:timestamp"),
    ("From 00:00-00:03 we hear a knock.", "stop", "leak:timestamp"),
    ("The text says the bus was late.", "stop", "leak:text_says"),
    ("According to the description, she is happy.", "stop", "leak:description_ref"),
    ("The instructions ask for a phone system.", "stop", "leak:instruction_ref"),
    ("Emotion: Neutral, Gender: Female.", "stop", "leak:field_label"),
    ("<|AUDIO|> a door knock", "stop", "leak:audio_token"),
    ("Instruction: describe the audio", "stop", "leak:instruction_echo"),
    ("The speaker is a woman with a high voice; she sounds neutral.", "stop", None),
])
def test_quality_filters(text: str, finish: str, reason: str | None) -> None:
    assert filters.check(text, finish) == reason


FEMALE = "[00:00-00:02] Hello. (Emotion: Neutral, Gender: Female, Pitch: High, Duration: 2s)"


@pytest.mark.parametrize("text,reason", [
    ("The speaker is a woman with a high voice.", None),
    ("She speaks slowly and calmly.", None),
    ("The speaker is a man.", "contradicts:Gender"),
    ("His voice is high and clear.", "contradicts:Gender"),
    ("The voice sounds gender-neutral and calm.", None),  # no commitment to either gender
    ("A human voice, high and fast.", None),  # 'human' is not 'man'
])
def test_gender_contradiction_filter(text: str, reason: str | None) -> None:
    assert filters.check(text, "stop", FEMALE) == reason
    assert filters.check(text, "stop") is None  # without the seed there is nothing to contradict


@pytest.mark.parametrize("text,kept,reason", [
    ("She speaks slowly. Her voice is high and the clip is very", "She speaks slowly.", None),
    ('It says "stop!" then the speaker', 'It says "stop!"', None),
    ("The speaker says that the bus was late and then it", None, "truncated"),
    ("He speaks slowly. The voice is", "He speaks slowly.", "contradicts:Gender"),  # trimmed, then checked
])
def test_trim_truncated_keeps_complete_sentences(text: str, kept: str | None, reason: str | None) -> None:
    out, why, trimmed = filters.accept(text, "length", FEMALE, trim_truncated=True)
    assert why == reason and trimmed == (kept is not None)
    if kept is not None:
        assert out == kept
    assert filters.accept(text, "length", FEMALE, trim_truncated=False)[1] == "truncated"
    assert filters.accept("She speaks. It is", "stop", FEMALE, trim_truncated=True) == ("She speaks. It is", None, False)


def test_pool_restricted_to_kinds() -> None:
    pool = load_pool()
    cut = restrict(pool, ["gender", "describe"])
    assert {i.kind for i in cut.instructions} == {"gender", "describe"} and cut.digest == pool.digest
    assert restrict(pool, None) is pool
    with pytest.raises(ValueError, match="label.kinds: \\['nope'\\]"):
        restrict(pool, ["gender", "nope"])
    for row in seed_rows(20):
        assert draw(cut, row, 0, 1)[0].kind in {"gender", "describe"}


def test_aqa_row_exact_schema() -> None:
    speech, sound = seed_rows(5)[0], seed_rows(5)[4]
    row = aqa_row(speech, 0, "Describe the audio.", "A man speaks.")
    assert tuple(row) == ROW_KEYS
    assert row["id"] == row_id(speech["id"], 0) == f"{speech['id']}-0"
    assert row["messages"] == [
        {"role": "system", "content": "Focus on the audio clips and instructions."},
        {"role": "user", "content": "<|AUDIO|>\nDescribe the audio.",
         "audios": [{"audio": speech["audio"], "text": speech["transcript"]}]},
    ]
    assert aqa_row(sound, 1, "p", "r")["messages"][1]["audios"] == [{"audio": sound["audio"], "text": None}]
    assert row_id("x", 0) != row_id("x", 1)


def _plan(seeds: Path, tmp_path: Path, models: ModelsConfig, **cfg: object) -> list:
    from components.label.units import plan_units, prepare_job

    return plan_units(seeds, prepare_job(tmp_path / "out", label_cfg(**cfg), models))


def test_plan_checks_the_seed_contract(tmp_path: Path, models: ModelsConfig) -> None:
    rows = seed_rows(3)
    minimal = [{k: r[k] for k in ("id", "dataset", "audio", "seed_description")} for r in rows]
    units = _plan(write_jsonl(tmp_path / "ok.jsonl", minimal), tmp_path, models)  # transcript is optional
    assert sum(u.clips for u in units) == 3
    with pytest.raises(ValueError, match=r"bad.jsonl:1: seed row lacks seed_description"):
        _plan(write_jsonl(tmp_path / "bad.jsonl", [{**rows[0], "seed_description": ""}]), tmp_path, models)
    with pytest.raises(ValueError, match=r"dup.jsonl:2: duplicate seed id"):
        _plan(write_jsonl(tmp_path / "dup.jsonl", [rows[0], rows[0]]), tmp_path, models)
    (tmp_path / "torn.jsonl").write_text(json.dumps(rows[0]) + "\n" + json.dumps(rows[1])[:40] + "\n")
    with pytest.raises(DamagedFile, match=r"torn.jsonl:2: not a JSON line"):
        _plan(tmp_path / "torn.jsonl", tmp_path, models)
    with pytest.raises(FileNotFoundError):
        _plan(tmp_path / "missing", tmp_path, models)
    with pytest.raises(ValueError, match="no seed rows in"):
        _plan(write_jsonl(tmp_path / "empty.jsonl", []), tmp_path, models)


def test_units_hold_references_and_read_their_own_rows(tmp_path: Path, models: ModelsConfig) -> None:
    """Units cut across seed shards (and across a skipped row and a blank line) read back exactly the
    chosen rows in input order, as SEED_FIELDS; pickled units carry offsets, not rows."""
    import pickle

    from components.label.units import SEED_FIELDS

    rows = seed_rows(11)
    rows[4] = {**rows[4], "split": "test"}  # skipped by label.splits
    shards = tmp_path / "seeds" / "shards"
    write_jsonl(shards / "seeds-000000.jsonl", rows[:5])
    write_jsonl(shards / "seeds-000001.jsonl", rows[5:])
    (shards / "seeds-000001.jsonl").write_text("\n" + (shards / "seeds-000001.jsonl").read_text())
    units = _plan(tmp_path / "seeds", tmp_path, models, shard_rows=3, instructions_per_clip=1)
    assert [u.clips for u in units] == [3, 3, 3, 1] and [u.size for u in units] == [3, 3, 3, 1]
    assert len(units[1].lines) == 2  # rows 3 and 5-6: two files
    want = [{f: r.get(f) for f in SEED_FIELDS} for r in rows if r.get("split") != "test"]
    assert [s for u in units for s in u.seeds()] == want
    assert [s for u in pickle.loads(pickle.dumps(units)) for s in u.seeds()] == want
    assert len(pickle.dumps(units[0])) < sum(len(json.dumps(r)) for r in rows[:3])


def test_cache_key_covers_every_input() -> None:
    base = ("desc", "instr", "sha256:g", "tmpl", {"engine": "hf/bf16", "max_new_tokens": 96, "temperature": 0.0})
    k = cache_key(*base)
    variants = [("desc2", *base[1:]), (base[0], "instr2", *base[2:]), (*base[:2], "sha256:h", *base[3:]),
                (*base[:3], "tmpl2", base[4]), (*base[:4], {**base[4], "max_new_tokens": 64}),
                (*base[:4], {**base[4], "engine": "hf/fp32"})]
    assert len({k} | {cache_key(*v) for v in variants}) == 1 + len(variants)
    assert cache_key(*base[:4], dict(reversed(list(base[4].items())))) == k  # order-free


def test_cache_keeps_whole_batches(tmp_path: Path) -> None:
    c = ResponseCache(tmp_path)
    c.put_many({"a": Cached("x", "stop", 3, 1), "b": Cached("y", "length", 3, 2)}, "g")
    c.put_many({"a": Cached("other", "stop", 1, 1)}, "g")  # first writer wins
    assert c.get_many(["a", "b", "z"]) == {"a": Cached("x", "stop", 3, 1), "b": Cached("y", "length", 3, 2)}
    assert len(c) == 2
    c.close()


def test_plan_batches_buckets_by_length_and_dedups() -> None:
    reqs = [Request(f"k{i}", ({"role": "user", "content": "x" * n},), 8) for i, n in enumerate([5, 50, 6, 49, 7, 5])]
    reqs.append(reqs[0])
    batches = plan_batches(reqs, lambda r: len(r.messages[0]["content"]), 3)
    assert [[len(r.messages[0]["content"]) for r in b] for b in batches] == [[5, 5, 6], [7, 49, 50]]


def test_label_config_in_both_profiles(repo: Path) -> None:
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    for prof in ("tiny", "paper"):
        assert set(raw[prof]["label"]) == set(LabelConfig.model_fields), prof
    raw["tiny"]["label"]["temprature"] = 0.1
    with pytest.raises(ConfigError, match=r"tiny\.label\.temprature: unknown key"):
        parse_params(raw)


def test_vllm_is_imported_only_when_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    """A FAKE `vllm` module: vLLM cannot run on these GPU-less machines (docs/label.md says why), so this
    checks the backend's wiring (lazy import, sampling params, token counts), not vLLM itself."""
    import components.label.run  # noqa: F401 - the whole stage imports without vllm

    assert "vllm" not in sys.modules
    calls: dict = {}

    class Out:
        def __init__(self, n: int) -> None:
            self.prompt_token_ids = list(range(n))
            self.outputs = [types.SimpleNamespace(text=" hi ", finish_reason="length", token_ids=[1, 2])]

    class FakeLLM:
        def __init__(self, **kw) -> None:
            calls["init"] = kw

        def get_tokenizer(self):
            return types.SimpleNamespace(
                apply_chat_template=lambda msgs, **kw: "|".join(m["content"] for m in msgs),
                __call__=None,
            )

        def generate(self, prompts, params, use_tqdm=False):
            calls["params"] = params
            return [Out(len(p["prompt_token_ids"])) for p in prompts]

    fake = types.ModuleType("vllm")
    fake.LLM = FakeLLM
    fake.SamplingParams = lambda **kw: kw
    monkeypatch.setitem(sys.modules, "vllm", fake)
    from components.label.backends import make_backend
    from components.label.backends.vllm import VLLMBackend

    monkeypatch.setattr(VLLMBackend, "_ids", lambda self, r: [1, 2, 3])
    b = make_backend(LabelConfig(backend="vllm"), "some/model", None)
    assert b.engine == "vllm/bf16" and calls["init"]["model"] == "some/model"
    (c,) = b.generate([Request("k", ({"role": "user", "content": "q"},), 16, 0.7, 0.9, 5)])
    assert (c.text, c.finish, c.prompt_tokens, c.completion_tokens) == ("hi", "length", 3, 2)
    assert calls["params"] == [{"temperature": 0.7, "top_p": 0.9, "max_tokens": 16, "seed": 5}]


def test_brief_questions_ask_one_attribute_without_an_option_order() -> None:
    """`brief`: short questions on one voice attribute (dense targets for a small connector), each
    requiring its seed field so that focus demands the answer state it. SmolLM2 answers "X or Y?"
    with X whatever the seed says (30/30 "male" for female seeds, measured), so brief questions
    name no options, and the pool's "male or female" questions name each gender first equally often."""
    pool = load_pool().instructions
    brief = [i for i in pool if i.kind == "brief"]
    assert {i.requires for i in brief} == {"Gender", "Pitch", "Speaking speed"} and all(i.audio == "speech" for i in brief)
    assert not [i.text for i in brief if " or " in i.text]
    first = Counter(m.group(1) for i in pool if i.requires == "Gender"
                    for m in [re.search(r"\b(male|female|man|woman)\b.*\bor\b", i.text.lower())] if m)
    assert first["male"] + first["man"] == first["female"] + first["woman"] > 0
    row = seed_rows(1)[0]
    no_gender = {**row, "seed_description": row["seed_description"].replace("Gender:", "Sex:")}
    asked = lambda r: {i.requires for i in eligible(restrict(load_pool(), ["brief"]), r)}  # noqa: E731
    assert "Gender" in asked(row) and "Gender" not in asked(no_gender)
    assert filters.accept("The speaker is a female.", "stop", FEMALE, focus=True, required="Gender")[1] is None
    assert filters.accept("The voice is male.", "stop", FEMALE, focus=True, required="Gender")[1] == "unfocused"

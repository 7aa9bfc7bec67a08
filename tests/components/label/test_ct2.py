"""The ct2 backend on the real embedded SmolLM2 (converted to CTranslate2 once, cached): fp32 greedy
text equal to the hf backend's, the shared head cached as a static prompt, per-row seeded sampling, and
the label driver end to end (its engine in the cache key and provenance)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from components.label import template
from components.label.backends.base import Request
from tests.components.label.helpers import label_cfg, read_rows, seed_file, seed_rows

INSTRUCTIONS = ["Describe the speaker's voice.", "What is the gender of the speaker?",
                "How fast is the speaker talking?", "What sound is heard?"]


def requests(n: int, max_new_tokens: int = 24, **extra: object) -> list[Request]:
    return [Request(f"k{i}", tuple(template.generator_messages(s["seed_description"], INSTRUCTIONS[i % 4])),
                    max_new_tokens, **extra) for i, s in enumerate(seed_rows(n))]


@pytest.fixture(scope="module")
def ct2(llm_dir: Path):
    from components.label.backends.ct2 import CT2Backend

    backend = CT2Backend(llm_dir, compute_type="float32", threads=1)
    yield backend
    backend.close()


def test_greedy_text_equals_hf_fp32(ct2, llm_dir: Path) -> None:
    from components.label.backends.hf import HFBackend

    hf = HFBackend(llm_dir, precision="fp32", threads=1)
    reqs = requests(8)
    want = hf.generate(reqs)
    got = ct2.generate(reqs)
    hf.close()
    assert [c.text for c in got] == [c.text for c in want]
    assert [(c.finish, c.prompt_tokens, c.completion_tokens) for c in got] == \
           [(c.finish, c.prompt_tokens, c.completion_tokens) for c in want]
    # the labelling system prompt is the static prompt: most of each prompt, computed once
    head = ct2.stats["static_prompt_tokens"]
    assert 100 < head < min(c.prompt_tokens for c in got)


def test_batches_give_the_text_of_single_requests(ct2) -> None:
    reqs = requests(5)
    batched = [c.text for c in ct2.generate(reqs)]
    assert batched == [ct2.generate([r])[0].text for r in reqs]


def test_sampled_rows_follow_their_own_seed(ct2) -> None:
    before = ct2.stats.get("sampled_on_hf_fp32", 0)  # the backend is the module's: other tests count too
    sampled = requests(3, temperature=0.9, seed=7)
    alone = [ct2.generate([r])[0].text for r in sampled]
    mixed = ct2.generate(requests(2) + sampled)[2:]  # beside greedy rows: same samples
    assert [c.text for c in mixed] == alone
    reseeded = ct2.generate([replace(sampled[0], seed=8)])[0].text
    greedy = ct2.generate(requests(1))[0].text
    assert len({alone[0], reseeded, greedy}) > 1  # the seed and the temperature matter
    assert ct2.stats["sampled_on_hf_fp32"] - before == 3 + 3 + 1


def test_engine_tag_names_compute_type_and_converted_weights(ct2, llm_dir: Path) -> None:
    from components.embedded.ct2_llm import convert_ct2_llm
    from components.label.backends import expected_engine
    from components.modeldir import weights_digest

    digest = weights_digest(convert_ct2_llm(llm_dir)).removeprefix("sha256:")[:16]
    assert ct2.engine == f"ct2/float32/{digest}"
    assert expected_engine(label_cfg(backend="ct2"), str(llm_dir)) == ct2.engine
    assert expected_engine(label_cfg(backend="ct2", compute_type="int8"), str(llm_dir)) == f"ct2/int8/{digest}"


def test_label_with_ct2_regenerates_and_records_its_engine(tmp_path: Path, models, hf_backend, ct2) -> None:
    from components.label.run import PROVENANCE, STATS, label

    seeds, cache = seed_rows(6), tmp_path / "cache"
    label(seed_file(tmp_path, seeds), tmp_path / "hf", label_cfg(), models, cache_dir=cache, backend=hf_backend, show_progress=False)
    stats = label(seed_file(tmp_path, seeds), tmp_path / "ct2", label_cfg(backend="ct2"), models, cache_dir=cache, backend=ct2,
                  show_progress=False)
    assert stats["cache_hits"] == 0 and stats["generated"] == stats["requests"] > 0  # another engine: nothing reused
    assert stats["engine"] == ct2.engine and stats["backend"] == "ct2"
    prov = json.loads((tmp_path / "ct2" / "shards" / PROVENANCE).read_text())
    assert prov["engine"] == ct2.engine
    assert read_rows(tmp_path / "ct2") and json.loads((tmp_path / "ct2" / STATS).read_text())["rows_written"] > 0
    again = label(seed_file(tmp_path, seeds), tmp_path / "ct2", label_cfg(backend="ct2"), models, cache_dir=cache, show_progress=False)
    assert again["generated"] == 0 and again["cache_hits"] == stats["requests"]  # a re-run loads nothing

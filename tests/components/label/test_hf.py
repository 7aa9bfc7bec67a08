"""The hf backend on the real embedded SmolLM2: the system turn and each clip's description run once,
yet in fp32 the greedy text is transformers `generate`'s on the whole prompts, token for token;
bf16 weights stored as autocast casts them give autocast's numbers; sampled rows follow their own seed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from components.label import template
from components.label.backends.base import Request
from tests.components.label.helpers import seed_rows

INSTRUCTIONS = ["Describe the speaker's voice.", "What is the gender of the speaker?",
                "How fast is the speaker talking?", "What sound is heard?"]


def clip_requests(clips: int, per_clip: int, max_new_tokens: int = 24, **extra: object) -> list[Request]:
    """`per_clip` instructions about each of `clips` seed rows, as the label driver asks them."""
    out = []
    for c, s in enumerate(seed_rows(clips)):
        for j in range(per_clip):
            msgs = template.generator_messages(s["seed_description"], INSTRUCTIONS[(c + j) % 4])
            out.append(Request(f"k{c}-{j}", tuple(msgs), max_new_tokens,
                               shared=template.shared_text(s["seed_description"]), **extra))
    return out


def generate_reference(backend, reqs: list[Request]) -> list[list[int]]:
    """What the backend did before: transformers `generate` on the left-padded whole prompts."""
    tok = backend.tokenizer
    enc = tok([backend.prompt(r) for r in reqs], return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        out = backend.model.generate(**enc, max_new_tokens=max(r.max_new_tokens for r in reqs), do_sample=False,
                                     eos_token_id=sorted(backend.eos_ids), pad_token_id=tok.pad_token_id)
    return out[:, enc["input_ids"].shape[1]:].tolist()


@pytest.fixture(scope="module")
def hf32(llm_dir: Path):
    from components.label.backends.hf import HFBackend

    backend = HFBackend(llm_dir, precision="fp32", threads=1)
    yield backend
    backend.close()


def test_shared_openings_give_generate_text_in_fp32(hf32) -> None:
    from components.label.backends.base import completion

    reqs = clip_requests(4, 3) + clip_requests(1, 1)[:1]  # a clip asked once sits beside clips asked 3x
    before = dict(hf32.stats)
    got = hf32.generate(reqs)
    want = [completion(t, r.max_new_tokens, 0, hf32.eos_ids, hf32._decode) for t, r in
            zip(generate_reference(hf32, reqs), reqs)]
    assert [c.text for c in got] == [c.text for c in want]
    assert [(c.finish, c.completion_tokens) for c in got] == [(c.finish, c.completion_tokens) for c in want]
    assert all(c.text for c in got)
    # the path under test ran: the system turn (most of each prompt) once, one opening per distinct clip
    assert 100 < hf32.stats["shared_head_tokens"] < min(c.prompt_tokens for c in got)
    assert hf32.stats["shared_openings"] - before["shared_openings"] == 4  # clip 0 is in both lists: one opening
    assert hf32.stats["batches_without_head"] == before["batches_without_head"]


def test_prompts_without_a_shared_system_turn_run_whole(hf32) -> None:
    reqs = [Request(f"u{i}", ({"role": "user", "content": f"Name a colour. ({i})"},), 12) for i in range(3)]
    before = hf32.stats["batches_without_head"]
    got = hf32.generate(reqs)
    want = generate_reference(hf32, reqs)
    assert hf32.stats["batches_without_head"] == before + 1
    assert [c.text for c in got] == [hf32._decode([t for t in w if t not in hf32.eos_ids]).strip() for w in want]


def test_batches_are_planned_so_a_clips_instructions_sit_together(hf32) -> None:
    from components.label.units import plan_batches

    reqs = clip_requests(6, 4)
    batches = plan_batches(list(reversed(reqs)), hf32.length, 8)
    assert all(len({r.shared for r in b}) == 2 for b in batches)  # 8 rows = 2 clips x 4 instructions


def test_bf16_weights_give_autocasts_numbers(llm_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    from components.label.backends.hf import store_linears_bf16

    ids = torch.randint(100, 20000, (2, 24), generator=torch.Generator().manual_seed(0))
    model = AutoModelForCausalLM.from_pretrained(str(llm_dir), dtype=torch.float32).eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = model(input_ids=ids).logits
        store_linears_bf16(model)
        stored = model(input_ids=ids).logits
    assert model.get_input_embeddings().weight.dtype == torch.float32
    assert model.get_output_embeddings().weight.dtype == torch.bfloat16
    assert torch.equal(autocast, stored)


def test_sampled_rows_follow_their_own_seed(hf32) -> None:
    sampled = clip_requests(2, 1, temperature=0.9, seed=7)
    alone = [hf32.generate([r])[0].text for r in sampled]
    mixed = hf32.generate(clip_requests(3, 2)[2:] + sampled)[-2:]  # beside greedy rows: the same samples
    assert [c.text for c in mixed] == alone
    greedy = [hf32.generate([Request(r.key, r.messages, r.max_new_tokens, shared=r.shared)])[0].text for r in sampled]
    assert alone != greedy

"""Label engines side by side (issue 17): the same label prompts through hf (fp32 = the reference text,
and the profile's precision) and CTranslate2 (float32, int8; the labelling system prompt as its static
prompt), then the whole label driver with the tiny profile's filters on the same seeds, for the kept-row
yield of each engine. Figures in bench/results/label_engines.json, ratios against hf in the same run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from components.config import load_profile
from components.label.backends.base import Request
from components.label.template import generator_messages
from tests.bench.conftest import cpu
from tests.bench.test_bench_label import HostLoad, _seeds

pytestmark = pytest.mark.bench
PROMPTS, NEW_TOKENS = 64, 40
INSTRUCTIONS = ["Describe the speaker's voice.", "What is the gender of the speaker?",
                "How fast is the speaker talking?", "What can you hear in this clip?"]



def _timed(backend, requests: list[Request], batch: int) -> tuple[float, list]:
    out, t0 = [], time.perf_counter()
    for b in range(0, len(requests), batch):
        out += backend.generate(requests[b : b + batch])
    return time.perf_counter() - t0, out


@pytest.mark.timeout(5400)
def test_label_engines(tmp_path: Path, repo: Path, embedded_models: dict[str, Path], record) -> None:
    from components.label.backends.ct2 import CT2Backend
    from components.label.backends.hf import HFBackend
    from components.label.run import label
    from components.precision import resolve

    prof = load_profile(repo / "params.yaml")
    llm = embedded_models["smollm2-135m-instruct"]
    seeds, source = _seeds(PROMPTS)
    requests = [Request(f"k{i}", tuple(generator_messages(s["seed_description"], INSTRUCTIONS[i % 4])), NEW_TOKENS)
                for i, s in enumerate(seeds)]
    batch = prof.label.batch_size
    load = HostLoad()
    engines = {"hf/fp32": lambda: HFBackend(llm, precision="fp32"),
               f"hf/{resolve(prof.label.precision)}": lambda: HFBackend(llm, precision=prof.label.precision),
               "ct2/float32": lambda: CT2Backend(llm, compute_type="float32"),
               "ct2/int8": lambda: CT2Backend(llm, compute_type="int8")}
    gen: dict[str, dict] = {}
    reference: list[str] = []
    for name, make in engines.items():
        backend = make()
        backend.generate(requests[:2])  # warm-up: first-call allocations and the static prompt's state
        seconds, out = _timed(backend, requests, batch)
        backend.close()
        texts = [c.text for c in out]
        reference = reference or texts
        tokens = sum(c.completion_tokens for c in out)
        gen[name] = {"seconds": round(seconds, 2), "rows_per_s": round(len(out) / seconds, 2),
                     "tokens_per_s": round(tokens / seconds, 1), "identical_to_hf_fp32": sum(
                         a == b for a, b in zip(texts, reference))}
    base = gen[f"hf/{resolve(prof.label.precision)}"]["seconds"]
    for name, fig in gen.items():
        fig["x_vs_hf_profile_precision"] = round(base / fig["seconds"], 2)
        fig["x_vs_hf_fp32"] = round(gen["hf/fp32"]["seconds"] / fig["seconds"], 2)

    # The kept-row yield of the tiny profile's filters, per engine, on the same seeds.
    yields: dict[str, dict] = {}
    for name, cfg in {f"hf/{resolve(prof.label.precision)}": prof.label,
                      "ct2/float32": prof.label.model_copy(update={"backend": "ct2", "compute_type": "float32"}),
                      "ct2/int8": prof.label.model_copy(update={"backend": "ct2", "compute_type": "int8"})}.items():
        out = tmp_path / name.replace("/", "-")
        t0 = time.perf_counter()
        stats = label(seeds, out, cfg, prof.models.model_copy(update={"llm": str(llm)}), cache_dir=out / "cache",
                      show_progress=False)
        yields[name] = {"seconds": round(time.perf_counter() - t0, 1), "requests": stats["requests"],
                        "rows_written": stats["rows_written"], "choice_rows": stats["choice_rows"],
                        "generated": stats["generated"], "filtered": stats["filtered"],
                        "quarantined": stats["quarantined"], "rows_by_asked_value": stats["rows_by_asked_value"]}
    record("label_engines", {"seeds": source, "prompts": len(requests), "new_tokens": NEW_TOKENS, "batch": batch,
                             "cpu": cpu(), "others_load": load.others(), "generation": gen, "label_yield": yields})
    assert gen["ct2/float32"]["identical_to_hf_fp32"] >= 0.9 * len(requests), gen

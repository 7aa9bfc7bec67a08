"""Label engines side by side (issue 17): the same label prompts through the previous hf backend
(transformers `generate` on whole prompts: components/label/backends/hf.py as of BASELINE, read from
git) in fp32 (the reference text) and in the profile's precision, today's hf backend (the system turn
and each clip's description run once), and CTranslate2 (float32, int8; the system prompt as its static
prompt); then the whole label driver with the tiny profile's filters on the same seeds, for the
kept-row yield of each engine. The prompts are shaped as the driver asks them: 4 instructions per clip,
batches planned by `plan_batches` with each engine's own length. Figures in
bench/results/label_engines.json, ratios against the previous hf in the same run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from components.config import load_profile
from components.label.backends.base import Request
from components.label.template import generator_messages, shared_text
from components.label.units import plan_batches
from tests.bench.conftest import cpu, module_at
from tests.bench.test_bench_label import HostLoad, _seeds
from tests.components.label.helpers import seed_file

pytestmark = pytest.mark.bench
CLIPS, PER_CLIP, NEW_TOKENS = 16, 4, 40
BASELINE = "4603578"  # main before the hf backend ran shared openings once
INSTRUCTIONS = ["Describe the speaker's voice.", "What is the gender of the speaker?",
                "How fast is the speaker talking?", "What can you hear in this clip?"]


def _timed(backend, requests: list[Request], batch: int) -> tuple[float, list]:
    out, t0 = {}, time.perf_counter()
    for b in plan_batches(requests, backend.length, batch):
        out.update(zip((r.key for r in b), backend.generate(b)))
    return time.perf_counter() - t0, [out[r.key] for r in requests]


@pytest.mark.timeout(5400)
def test_label_engines(tmp_path: Path, repo: Path, embedded_models: dict[str, Path], record) -> None:
    from components.label.backends.ct2 import CT2Backend
    from components.label.backends.hf import HFBackend
    from components.label.run import label
    from components.precision import resolve

    previous = module_at(repo, BASELINE, "components/label/backends/hf.py", tmp_path).HFBackend
    prof = load_profile(repo / "params.yaml")
    prec = resolve("bf16")  # bf16 where this CPU has native kernels, else fp32 (then the bf16 rows are the fp32 ones)
    llm = embedded_models["smollm2-135m-instruct"]
    seeds, source = _seeds(64)
    requests = [Request(f"k{c}-{j}", tuple(generator_messages(s["seed_description"], ins)), NEW_TOKENS,
                        shared=shared_text(s["seed_description"]))
                for c, s in enumerate(seeds[:CLIPS]) for j, ins in enumerate(INSTRUCTIONS[:PER_CLIP])]
    batch = prof.label.batch_size
    load = HostLoad()
    engines = {"hf-generate/fp32": lambda: previous(llm, precision="fp32"),
               f"hf-generate/{prec}": lambda: previous(llm, precision=prec),
               "hf/fp32": lambda: HFBackend(llm, precision="fp32"),
               f"hf/{prec}": lambda: HFBackend(llm, precision=prec),
               "ct2/float32": lambda: CT2Backend(llm, compute_type="float32"),
               "ct2/int8": lambda: CT2Backend(llm, compute_type="int8")}
    gen: dict[str, dict] = {}
    reference: list[str] = []
    for name, make in engines.items():
        backend = make()
        backend.generate(requests[:2])  # warm-up: first-call allocations and the shared head's state
        seconds, out = _timed(backend, requests, batch)
        backend.close()
        texts = [c.text for c in out]
        reference = reference or texts
        tokens = sum(c.completion_tokens for c in out)
        gen[name] = {"seconds": round(seconds, 2), "rows_per_s": round(len(out) / seconds, 2),
                     "tokens_per_s": round(tokens / seconds, 1), "identical_to_hf_generate_fp32": sum(
                         a == b for a, b in zip(texts, reference))}
    for name, fig in gen.items():
        fig[f"x_vs_hf_generate_{prec}"] = round(gen[f"hf-generate/{prec}"]["seconds"] / fig["seconds"], 2)
        fig["x_vs_hf_generate_fp32"] = round(gen["hf-generate/fp32"]["seconds"] / fig["seconds"], 2)

    # The kept-row yield of the tiny profile's filters, per engine, on the same seeds.
    yields: dict[str, dict] = {}
    ct2 = {c: prof.label.model_copy(update={"backend": "ct2", "compute_type": c}) for c in ("float32", "int8")}
    hf = {p: prof.label.model_copy(update={"backend": "hf", "precision": p}) for p in ("fp32", "bf16")}
    runs = {f"hf-generate/{prec}": (hf[prec], lambda: previous(llm, precision=prec)),
            "hf/fp32": (hf["fp32"], lambda: None), f"hf/{prec}": (hf[prec], lambda: None),
            "ct2/float32": (ct2["float32"], lambda: None), "ct2/int8": (ct2["int8"], lambda: None)}
    for name, (cfg, backend) in runs.items():
        out = tmp_path / name.replace("/", "-")
        t0 = time.perf_counter()
        stats = label(seed_file(tmp_path, seeds), out, cfg, prof.models.model_copy(update={"llm": str(llm)}), cache_dir=out / "cache",
                      backend=backend(), show_progress=False)
        yields[name] = {"seconds": round(time.perf_counter() - t0, 1), "requests": stats["requests"],
                        "rows_written": stats["rows_written"], "choice_rows": stats["choice_rows"],
                        "generated": stats["generated"], "filtered": stats["filtered"],
                        "quarantined": stats["quarantined"], "rows_by_asked_value": stats["rows_by_asked_value"]}
    record("label_engines", {"seeds": source, "prompts": len(requests), "new_tokens": NEW_TOKENS, "batch": batch,
                             "cpu": cpu(), "others_load": load.others(), "generation": gen, "label_yield": yields})
    assert gen["hf/fp32"]["identical_to_hf_generate_fp32"] == len(requests), gen
    assert gen["ct2/float32"]["identical_to_hf_generate_fp32"] >= 0.9 * len(requests), gen

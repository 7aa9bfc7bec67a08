"""Regenerate mmau-test-mini_synthetic.json.gz: MMAU test-mini rows plus made-up predictions.

Usage: python make_mmau_synthetic.py MMAU/mmau-test-mini.json OUT.json.gz
Input: Sakshi113/MMAU mmau-test-mini.json at commit 110127f (blob a2f7539, Apache-2.0).
Each row gets a `model_prediction` and a `model_output` drawn from prediction styles that
stress the string match (case, punctuation, option letters, two options, empty, partial
answers, Unicode); some rows lack one or both keys. Deterministic (seeded, gzip mtime 0).
"""

from __future__ import annotations

import gzip
import json
import random
import sys

MISSING = object()


def styles(answer: str, wrong: str, letter: str) -> list[object]:
    first = answer.split()[0] if answer.split() else answer
    return [
        answer,
        answer.upper() + ".",
        f"The answer is: {answer}.",
        f"({letter}) {answer}",
        wrong,
        f"{answer} or {wrong}",
        "",
        "?!",
        f"{answer}, because it is not {wrong}.",
        f"  {answer.lower()}\n",
        first,
        "I cannot determine the answer from the audio.",
        answer.replace(" ", "-"),
        f"{answer} \u2713",
        f"Answer: {letter.upper()}",
        MISSING,
    ]


def main(src: str, out: str) -> None:
    rows = json.load(open(src, encoding="utf-8"))
    rng = random.Random(20250807)
    for row in rows:
        answer = row["answer"]
        others = [c for c in row["choices"] if c != answer] or [answer]
        letters = "abcd"
        idx = row["choices"].index(answer) if answer in row["choices"] else 0
        for key in ("model_prediction", "model_output"):
            value = rng.choice(styles(answer, rng.choice(others), letters[idx % 4]))
            if value is not MISSING:
                row[key] = value
    data = json.dumps(rows, ensure_ascii=False, indent=1).encode("utf-8")
    with open(out, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
        gz.write(data)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

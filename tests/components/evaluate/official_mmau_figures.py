"""Figures printed by the official MMAU scorer, captured verbatim (stdout; tqdm went to stderr).

Scorer: Sakshi113/MMAU `evaluation.py` at repo HEAD 110127f54c0dfba3faa5ec9feee4a7e4148679c5
(file last changed in 74682927cf7f434cc9ed585b1f8a5e6150381e91), run with Python 3.11 on
2026-11-25 in a scratch directory. That file reads the key `model_output`; the `*_MODEL_PREDICTION`
blocks come from the same file with only its `output_key` line changed to 'model_prediction'
(the key its README documents and its code used until 74682927).

Inputs (in tests/components/evaluate/data/, gzipped; sha256 of the uncompressed JSON):
- DESTA25_*: kehanlu/DeSTA2.5-Audio@5503dfcb8c07ddc608ef705542f0f9b94cc99de8
  examples/evaluation/MMAU-v05.15.25/results/mmau-test-mini_results.json
  (blob 6172ea30e214bb65175c27fd2bb520579a267e3c), sha256 76e8dfa8...8b9c. The model_prediction
  task figures equal the ones that repo's README publishes (sound 70.57, music 56.29, speech 71.17).
- SYNTHETIC_*: mmau-test-mini_synthetic.json.gz made by make_mmau_synthetic.py from
  Sakshi113/MMAU@110127f mmau-test-mini.json, sha256 23319126...e3b2.
"""

from __future__ import annotations

import re

DESTA25_MODEL_PREDICTION = """\
******************************
Task-wise Accuracy:
sound : 70.57% over 333 samples
music : 56.29% over 334 samples
speech : 71.17% over 333 samples
******************************
Difficulty-wise Accuracy:
easy : 62.95% over 224 samples
hard : 59.75% over 236 samples
medium : 70.00% over 540 samples
******************************
Sub-category-wise Accuracy:
Acoustic Source Inference : 87.50% over 48 samples
Temporal Event Reasoning : 47.92% over 48 samples
Dissonant Emotion Interpretation : 88.57% over 35 samples
Event-Based Knowledge Retrieval : 78.79% over 33 samples
Counting : 48.28% over 29 samples
Phonemic Stress Pattern Analysis : 60.38% over 53 samples
Emotion State summarisation : 45.45% over 44 samples
Conversational Fact Retrieval : 95.45% over 22 samples
Key highlight Extraction : 90.48% over 21 samples
Multi Speaker Role Mapping : 100.00% over 27 samples
Phonological Sequence Decoding : 81.63% over 49 samples
Emotion Flip Detection : 35.00% over 20 samples
Instrumentation : 62.86% over 35 samples
Temporal Reasoning : 35.71% over 56 samples
Lyrical Reasoning : 70.00% over 10 samples
Socio-cultural Interpretation : 60.00% over 20 samples
Rhythm and Tempo Understanding : 58.70% over 46 samples
Musical Texture Interpretation : 76.47% over 34 samples
Melodic Structure Interpretation : 48.48% over 33 samples
Harmony and Chord Progressions : 60.61% over 33 samples
Musical Genre Reasoning : 58.82% over 34 samples
Event-Based Sound Reasoning : 87.50% over 48 samples
Emotional Tone Interpretation : 54.55% over 33 samples
Eco-Acoustic Knowledge : 70.21% over 47 samples
Ambient Sound Interpretation : 72.92% over 48 samples
Acoustic Scene Reasoning : 56.25% over 48 samples
Sound-Based Event Recognition : 71.74% over 46 samples
******************************
Total Accuracy: 66.00% over 1000 samples
******************************
No prediction count: 0
"""

DESTA25_MODEL_OUTPUT = """\
******************************
Task-wise Accuracy:
sound : 65.47% over 333 samples
music : 53.29% over 334 samples
speech : 60.36% over 333 samples
******************************
Difficulty-wise Accuracy:
easy : 60.71% over 224 samples
hard : 52.54% over 236 samples
medium : 62.41% over 540 samples
******************************
Sub-category-wise Accuracy:
Acoustic Source Inference : 87.50% over 48 samples
Temporal Event Reasoning : 41.67% over 48 samples
Dissonant Emotion Interpretation : 37.14% over 35 samples
Event-Based Knowledge Retrieval : 75.76% over 33 samples
Counting : 48.28% over 29 samples
Phonemic Stress Pattern Analysis : 60.38% over 53 samples
Emotion State summarisation : 25.00% over 44 samples
Conversational Fact Retrieval : 81.82% over 22 samples
Key highlight Extraction : 71.43% over 21 samples
Multi Speaker Role Mapping : 100.00% over 27 samples
Phonological Sequence Decoding : 81.63% over 49 samples
Emotion Flip Detection : 30.00% over 20 samples
Instrumentation : 62.86% over 35 samples
Temporal Reasoning : 33.93% over 56 samples
Lyrical Reasoning : 50.00% over 10 samples
Socio-cultural Interpretation : 60.00% over 20 samples
Rhythm and Tempo Understanding : 56.52% over 46 samples
Musical Texture Interpretation : 73.53% over 34 samples
Melodic Structure Interpretation : 45.45% over 33 samples
Harmony and Chord Progressions : 54.55% over 33 samples
Musical Genre Reasoning : 52.94% over 34 samples
Event-Based Sound Reasoning : 68.75% over 48 samples
Emotional Tone Interpretation : 54.55% over 33 samples
Eco-Acoustic Knowledge : 70.21% over 47 samples
Ambient Sound Interpretation : 70.83% over 48 samples
Acoustic Scene Reasoning : 56.25% over 48 samples
Sound-Based Event Recognition : 63.04% over 46 samples
******************************
Total Accuracy: 59.70% over 1000 samples
******************************
No prediction count: 0
"""

SYNTHETIC_MODEL_PREDICTION = """\
******************************
Task-wise Accuracy:
sound : 47.40% over 308 samples
music : 49.37% over 316 samples
speech : 48.55% over 311 samples
******************************
Difficulty-wise Accuracy:
easy : 51.69% over 207 samples
hard : 47.06% over 221 samples
medium : 47.73% over 507 samples
******************************
Sub-category-wise Accuracy:
Acoustic Source Inference : 40.43% over 47 samples
Temporal Event Reasoning : 51.22% over 41 samples
Dissonant Emotion Interpretation : 32.26% over 31 samples
Event-Based Knowledge Retrieval : 48.39% over 31 samples
Counting : 56.00% over 25 samples
Phonemic Stress Pattern Analysis : 49.02% over 51 samples
Emotion State summarisation : 51.22% over 41 samples
Conversational Fact Retrieval : 47.62% over 21 samples
Key highlight Extraction : 65.00% over 20 samples
Multi Speaker Role Mapping : 45.83% over 24 samples
Phonological Sequence Decoding : 55.32% over 47 samples
Emotion Flip Detection : 30.00% over 20 samples
Instrumentation : 45.45% over 33 samples
Temporal Reasoning : 52.73% over 55 samples
Lyrical Reasoning : 60.00% over 10 samples
Socio-cultural Interpretation : 38.89% over 18 samples
Rhythm and Tempo Understanding : 37.78% over 45 samples
Musical Texture Interpretation : 51.52% over 33 samples
Melodic Structure Interpretation : 39.29% over 28 samples
Harmony and Chord Progressions : 61.29% over 31 samples
Musical Genre Reasoning : 54.84% over 31 samples
Event-Based Sound Reasoning : 59.09% over 44 samples
Emotional Tone Interpretation : 56.25% over 32 samples
Eco-Acoustic Knowledge : 40.00% over 45 samples
Ambient Sound Interpretation : 52.27% over 44 samples
Acoustic Scene Reasoning : 39.13% over 46 samples
Sound-Based Event Recognition : 51.22% over 41 samples
******************************
Total Accuracy: 48.45% over 935 samples
******************************
No prediction count: 0
"""

SYNTHETIC_MODEL_OUTPUT = """\
******************************
Task-wise Accuracy:
sound : 44.73% over 313 samples
music : 52.96% over 321 samples
speech : 57.23% over 311 samples
******************************
Difficulty-wise Accuracy:
easy : 58.14% over 215 samples
hard : 51.33% over 226 samples
medium : 49.01% over 504 samples
******************************
Sub-category-wise Accuracy:
Acoustic Source Inference : 53.19% over 47 samples
Temporal Event Reasoning : 47.73% over 44 samples
Dissonant Emotion Interpretation : 51.52% over 33 samples
Event-Based Knowledge Retrieval : 68.75% over 32 samples
Counting : 46.15% over 26 samples
Phonemic Stress Pattern Analysis : 68.00% over 50 samples
Emotion State summarisation : 46.51% over 43 samples
Conversational Fact Retrieval : 45.45% over 22 samples
Key highlight Extraction : 41.18% over 17 samples
Multi Speaker Role Mapping : 50.00% over 24 samples
Phonological Sequence Decoding : 63.04% over 46 samples
Emotion Flip Detection : 83.33% over 18 samples
Instrumentation : 45.45% over 33 samples
Temporal Reasoning : 52.73% over 55 samples
Lyrical Reasoning : 60.00% over 10 samples
Socio-cultural Interpretation : 45.00% over 20 samples
Rhythm and Tempo Understanding : 53.66% over 41 samples
Musical Texture Interpretation : 51.61% over 31 samples
Melodic Structure Interpretation : 45.45% over 33 samples
Harmony and Chord Progressions : 51.52% over 33 samples
Musical Genre Reasoning : 69.70% over 33 samples
Event-Based Sound Reasoning : 50.00% over 44 samples
Emotional Tone Interpretation : 56.25% over 32 samples
Eco-Acoustic Knowledge : 48.89% over 45 samples
Ambient Sound Interpretation : 30.43% over 46 samples
Acoustic Scene Reasoning : 44.44% over 45 samples
Sound-Based Event Recognition : 38.10% over 42 samples
******************************
Total Accuracy: 51.64% over 945 samples
******************************
No prediction count: 0
"""


DESTA25_SHA256 = "76e8dfa89f2cd11745eb10f9ad40384b5e44783dde52f1979c0345884d298b9c"
SYNTHETIC_SHA256 = "2331912646690f670f1ae37a4a10c4cf85109dc78e40c04c99c27d4774b8e3b2"

# Older official version (6097b91, key model_prediction) prints unrounded floats; its totals:
DESTA25_6097B91_TOTAL = "Total acc: 66.0 over 1000 samples"
SYNTHETIC_6097B91_TOTAL = "Total acc: 48.44919786096257 over 935 samples"

_LINE = re.compile(r"^(.+?) : (\d+\.\d\d)% over (\d+) samples$")
_SECTIONS = {"Task-wise Accuracy:": "task", "Difficulty-wise Accuracy:": "difficulty", "Sub-category-wise Accuracy:": "sub-category"}


def parse_official(text: str) -> dict:
    """The official printout as score_mmau's dict (without `skipped`, which it cannot know)."""
    report: dict = {"task": {}, "difficulty": {}, "sub-category": {}}
    section = None
    for line in text.splitlines():
        if line in _SECTIONS:
            section = _SECTIONS[line]
        elif m := _LINE.match(line):
            report[section][m[1]] = {"accuracy": float(m[2]), "n": int(m[3])}
        elif m := re.match(r"^Total Accuracy: (\d+\.\d\d)% over (\d+) samples$", line):
            report["total"] = {"accuracy": float(m[1]), "n": int(m[2])}
    return report

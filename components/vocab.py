"""The attribute and question vocabulary shared by seeds, label and evaluate.

Seeds describe a clip with these words (the paper's seed-description fields), the labeller's
choice rows ask these questions, and the evaluation's multiple-choice questions use the same
wording and options, so a label row and a test question about one attribute read alike.
"""

from __future__ import annotations

from typing import Any

# The seed description's field names (the paper's, and this project's music ones), in description order.
SPEECH_FIELDS = ("Emotion", "Gender", "Pitch", "Volume", "Speaking speed")
MUSIC_FIELDS = ("Instrument", "Pitch register", "Tempo")
OTHER_FIELDS = ("Duration", "Audio category")

LEVELS = ["Very low", "Low", "Medium", "High", "Very high"]
SPEEDS = ["Very slow", "Slow", "Medium", "Fast", "Very fast"]

SYSTEM = "Focus on the audio clips and instruction."
MCQ_SUFFIX = "Choose one of the options without any explanation."

QUESTIONS = {
    "Gender": ("What is the gender of the speaker?", ["Male", "Female"], "easy"),
    "Pitch": ("How would you describe the pitch of the speaker's voice?", LEVELS, "medium"),
    "Speaking speed": ("How fast is the speaker talking?", SPEEDS, "medium"),
    "Volume": ("How loud is the speech in the recording?", LEVELS, "medium"),
}
# Music (the `music` source): General MIDI's instrument families in plain words (GM's "chromatic percussion"
# and "pipe" read as a percussion kit and a pipe organ to the labeller), the register and tempo words. An
# instrument question offers four families (the answer and three others), as the sound category's.
INSTRUMENT_FAMILIES = ["Piano", "Mallet percussion", "Organ", "Guitar", "Strings", "Brass", "Reed", "Flute"]
REGISTERS = ["Low", "Medium", "High"]
TEMPOS = ["Slow", "Medium", "Fast"]
MUSIC_QUESTIONS = {
    "Pitch register": ("In which pitch register is the melody played?", REGISTERS, "medium"),
    "Tempo": ("What is the tempo of the music?", TEMPOS, "medium"),
}
INSTRUMENT = "Which family of instruments is playing?"
SAID = "What did the speaker say?"
CATEGORY = "What sound event is heard in this recording?"


def mcq_prompt(row: dict[str, Any]) -> str:
    """The user prompt (after the audio): question, the choices, and the paper's MCQ instruction."""
    return f"{row['question']} Choices: {', '.join(row['choices'])}. {MCQ_SUFFIX}"

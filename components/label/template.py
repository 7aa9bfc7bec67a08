"""The fixed generator prompt: a labelling system prompt, the seed description and the instruction.

The generator sees the clip only as text; it must answer as if it heard the audio, because its
answer becomes the target for `audio + instruction`. Any change here changes TEMPLATE_DIGEST and
so (through the cache key) regenerates every response.
"""

from __future__ import annotations

import hashlib
import json

TEMPLATE_VERSION = "label-v1"

# A labelling system prompt lifts answer quality for small generators. Measured with SmolLM2-135M on
# espeak seeds: answers naming the right gender 31 % -> 45 % (the wrong one 9 % -> 7 %), answers
# mentioning the speaking speed 23 % -> 41 %.
SYSTEM_PROMPT = (
    "You are an expert listener. You will be told what can be heard in an audio clip: the spoken "
    "words and how the voice sounds (emotion, gender, pitch, volume, speaking speed), or the kind "
    "of sound. Answer the user's instruction as if you had listened to the clip yourself. "
    "Use the voice and sound details when they are relevant. Never mention descriptions, metadata, "
    "notes or timestamps, and never say that you were given text. "
    "Answer in one to three short sentences unless the instruction asks for another format."
)

USER_TEMPLATE = "What you hear in the clip:\n{seed_description}\n\nInstruction: {instruction}"

TEMPLATE_DIGEST = hashlib.sha256(
    json.dumps([TEMPLATE_VERSION, SYSTEM_PROMPT, USER_TEMPLATE]).encode()
).hexdigest()


def generator_messages(seed_description: str, instruction: str) -> list[dict[str, str]]:
    """Chat messages for the generator; the backend applies the model's chat template."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": USER_TEMPLATE.format(seed_description=seed_description, instruction=instruction)},
    ]


def shared_text(seed_description: str) -> str:
    """The opening of the user message every instruction about one clip shares (ends before the instruction)."""
    return USER_TEMPLATE.format(seed_description=seed_description, instruction="").rstrip()


def describe() -> dict[str, str]:
    """The template as recorded in provenance."""
    return {"version": TEMPLATE_VERSION, "system": SYSTEM_PROMPT, "user": USER_TEMPLATE, "digest": TEMPLATE_DIGEST}

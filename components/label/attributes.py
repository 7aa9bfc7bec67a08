"""What an answer says about the voice (gender, pitch, volume, speaking speed) or the music (instrument
family, pitch register, tempo), sentence by sentence.

A tiny connector learns an attribute only from targets that state it, and states it right: in a
10-minute CPU experiment a tiny DeSTA rose above chance on held-out speaking-speed questions only when
its targets kept the labeller's own sentences that state the attribute (attribute-dense targets);
with the ordinary mixed targets nothing rose above chance (docs/label.md). The labeller is the backbone itself, and a 135M one often
answers "low, medium and high" or names the wrong level. `focus` keeps the sentences of an
attribute answer that give the seed's value and contradict nothing else the seed says.

Mentions are local (a level next to its noun: "a very high pitch", "the pace is slow", "speaks
quickly") so "a high pitch and a very low volume" is one pitch and one volume mention.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from components.vocab import MUSIC_FIELDS, SPEECH_FIELDS

VOICE_ATTRIBUTES = tuple(f for f in SPEECH_FIELDS if f != "Emotion")  # emotion is not checked: no measurement
MUSIC_ATTRIBUTES = MUSIC_FIELDS
FOCUS_ATTRIBUTES = VOICE_ATTRIBUTES + MUSIC_ATTRIBUTES
SAID_KIND = "said"  # instructions whose answer is the words spoken ("What does the speaker say?")

# Words that commit an answer to one gender.
GENDER_WORDS = {
    "Male": re.compile(r"\b(?:male|man|men|he|his|him|masculine|boy|gentleman)\b", re.I),
    "Female": re.compile(r"\b(?:female|woman|women|she|her|hers|feminine|girl|lady)\b", re.I),
}
_HEDGE = r"(?:(?:quite|rather|fairly|relatively|a bit|somewhat|pretty|slightly)\s+)?"
_VERB = r"(?:is|was|are|were|sounds?|seems?|feels?|remains?|stays?)\s+(?:\w+\s+){0,2}?"
_LEVEL = r"(?P<v>(?:very\s+)?(?:low|medium|high))"
_SPEED = r"(?P<v>(?:very\s+)?(?:slow|medium|fast|quick|rapid))"
_SPEED_ADV = r"(?P<v>(?:very\s+)?(?:slowly|fast|quickly|rapidly))"


def _patterns(value: str, nouns: str) -> list[re.Pattern[str]]:
    return [
        re.compile(rf"\b{_HEDGE}{value}[\s-]+(?:{nouns})\b", re.I),
        re.compile(rf"\b(?:{nouns})\s+(?:level\s+)?{_VERB}{_HEDGE}{value}\b", re.I),
    ]


_MENTIONS: dict[str, list[re.Pattern[str]]] = {
    "Pitch": _patterns(_LEVEL, r"pitch(?:ed)?|pitch(?:ed)?\s+voice"),
    "Volume": _patterns(_LEVEL, r"volume|loudness"),
    "Speaking speed": _patterns(_SPEED, r"(?:speaking\s+|talking\s+)?(?:speed|pace|rate|tempo)")
    + [re.compile(rf"\b(?:speaks?|speaking|talks?|talking|says?|reads?|delivered|spoken)\s+{_SPEED_ADV}\b", re.I)],
}
# "Loud" and "quiet" name a side of the volume scale, not one of its five levels: the labeller says "speaks
# loudly" far more often than "a high volume" (docs/label.md). A side states the levels on it and
# contradicts the others ("loudly" of a Medium clip is wrong). "Out loud" is about reading, not volume.
SIDES = {"Volume": {"Loud": ("High", "Very high"), "Quiet": ("Low", "Very low")}}
_MENTIONS["Volume"] += [re.compile(r"\b(?<!out\s)(?P<v>loud(?:ly|er)?|quiet(?:ly|er)?|soft(?:ly|er)?)\b", re.I)]
_MENTIONS |= {
    "Pitch register": _patterns(r"(?P<v>low|middle|mid|medium|high)", r"register|range|pitch(?:ed)?|notes?|octaves?|tones?|melody|tune"),
    "Tempo": _patterns(r"(?P<v>slow|moderate|medium|fast|quick|brisk|rapid|lively)", r"tempo|pace|beat|rhythm|speed|melody|music|tune|song|piece")
    + [re.compile(r"\b(?:played|plays?|playing|moves?|moving)\s+(?P<v>slowly|quickly|fast|rapidly|briskly)\b", re.I)],
}
# Music: an instrument's name commits the answer to its General MIDI family (components/vocab.py).
FAMILY_WORDS = {
    "Piano": re.compile(r"\b(?:pianos?|keyboards?|harpsichord)\b", re.I),
    "Mallet percussion": re.compile(r"\b(?:xylophones?|marimbas?|vibraphones?|celestas?|glockenspiels?|mallets?"
                                       r"|dulcimers?|chimes?|bells?|(?:chromatic\s+|mallet\s+)?percussion)\b", re.I),
    "Organ": re.compile(r"\b(?:organs?|harmonium|accordions?)\b", re.I),
    "Guitar": re.compile(r"\bguitars?\b", re.I),
    "Strings": re.compile(r"\b(?:violins?|violas?|cellos?|strings?|fiddles?|double bass)\b", re.I),
    "Brass": re.compile(r"\b(?:trumpets?|trombones?|horns?|tubas?|brass|bugles?|cornets?)\b", re.I),
    "Reed": re.compile(r"\b(?:saxophones?|sax|clarinets?|oboes?|bassoons?|reeds?)\b", re.I),
    "Flute": re.compile(r"\b(?:flutes?|piccolos?|recorders?|(?:pan\s?)?pipes?(?!\s+organ)|whistles?|ocarinas?)\b", re.I),
}
_CANON = {"quick": "fast", "rapid": "fast", "slowly": "slow", "quickly": "fast", "rapidly": "fast", "middle": "medium",
          "mid": "medium", "moderate": "medium", "brisk": "fast", "briskly": "fast", "lively": "fast",
          "loudly": "loud", "louder": "loud", "quietly": "quiet", "quieter": "quiet", "soft": "quiet", "softly": "quiet",
          "softer": "quiet"}
# A sentence end: . ! or ? (optionally closed by a quote or bracket) before whitespace or the end.
SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s|$)")
_SEED_FIELD = r"\b{}:\s*([A-Za-z ]+?)\s*[,)]"


def seed_value(seed_description: str, attribute: str) -> str | None:
    """The seed description's value of an attribute (e.g. "Very high"), or None."""
    m = re.search(_SEED_FIELD.format(re.escape(attribute)), seed_description)
    return m.group(1) if m else None


def _normalise(raw: str) -> str:
    words = raw.lower().split()
    words[-1] = _CANON.get(words[-1], words[-1])
    return " ".join(words).capitalize()


def domain(attributes: Iterable[str]) -> tuple[str, ...]:
    """The attributes read in an answer about a clip with these (seed) attributes: the music ones for a music
    clip, else the voice ones ("a high tone" of a voice is no register, "he plays" no gender)."""
    return MUSIC_ATTRIBUTES if set(attributes) & set(MUSIC_ATTRIBUTES) else VOICE_ATTRIBUTES


def mentions(sentence: str, among: tuple[str, ...] = VOICE_ATTRIBUTES) -> dict[str, set[str]]:
    """Attribute -> values the sentence states (values as in the seed: "Very low", "Fast", "Male", "Brass"),
    for the attributes `among` (a `domain`)."""
    out: dict[str, set[str]] = {}
    for name, words in (("Gender", GENDER_WORDS), ("Instrument", FAMILY_WORDS)):
        for value, pattern in words.items() if name in among else ():
            if pattern.search(sentence):
                out.setdefault(name, set()).add(value)
    for attribute, patterns in _MENTIONS.items():
        if attribute not in among:
            continue
        found = {_normalise(m.group("v")) for p in patterns for m in p.finditer(sentence)}
        if found:
            out[attribute] = found
    return out


def _seed_values(seed_description: str) -> dict[str, str]:
    return {a: v for a in FOCUS_ATTRIBUTES if (v := seed_value(seed_description, a)) is not None}


def reading(attribute: str, value: str) -> set[str]:
    """What an answer may say to state `value` of `attribute`: the value, or the side of the scale it lies
    on ("Loud" states a Very high volume)."""
    return {value} | {side for side, levels in SIDES.get(attribute, {}).items() if value in levels}


def states(said: set[str] | None, attribute: str, value: str) -> bool:
    """True when the values `said` of an attribute (a `mentions` entry) state `value` and nothing else."""
    return bool(said) and said <= reading(attribute, value)


def _agrees(said: dict[str, set[str]], seed: dict[str, str]) -> bool:
    return all(states(values, a, seed[a]) for a, values in said.items() if a in seed)


def stated_values(response: str, seed_description: str) -> list[str]:
    """"Attribute=value" for each seed attribute the response states as the seed does, and no other way:
    what a kept row teaches."""
    seed = _seed_values(seed_description)
    said = mentions(response, domain(seed))
    return [f"{a}={v}" for a, v in seed.items() if states(said.get(a), a, v)]


def contradicts(sentence: str, seed_description: str) -> bool:
    """True when the sentence states a value of an attribute other than the seed's."""
    seed = _seed_values(seed_description)
    return not _agrees(mentions(sentence, domain(seed)), seed)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower().replace("\u2019", "'"))


def says(response: str, transcript: str) -> bool:
    """True when the answer gives every word of the transcript, in order and together (case and
    punctuation aside): what a "what was said" answer must teach."""
    t, r = _words(transcript), _words(response)
    return bool(t) and any(r[i : i + len(t)] == t for i in range(len(r) - len(t) + 1))


def without(response: str, transcript: str) -> str:
    """The answer with the transcript's words taken out: the words quoted may say "he" of a woman's
    voice, which is no claim about the voice."""
    t = _words(transcript)
    if not t:
        return response
    return re.sub(r"\W+".join(map(re.escape, t)), " ", response.replace("\u2019", "'"), flags=re.I)


def sentences(text: str) -> list[str]:
    """The text cut after every sentence end (an unfinished tail is a sentence too)."""
    cuts = [0] + [m.end() for m in SENTENCE_END.finditer(text)] + [len(text)]
    return [s for a, b in zip(cuts, cuts[1:]) if re.search(r"\w", s := text[a:b].strip())]


def focus(response: str, seed_description: str, required: str | None = None) -> tuple[str | None, str | None]:
    """(kept text, reason). Keeps the sentences that state at least one voice attribute the way
    the seed does and contradict none of it (for music: its instrument family, register, tempo). `required`
    (the attribute an instruction asks about) must be among the kept statements. Reasons: `unfocused` (no
    sentence states the voice right), `missing:<attribute>`. Seeds without these attributes (sounds) pass
    unchanged."""
    seed = _seed_values(seed_description)
    if not seed:
        return response, None
    among = domain(seed)
    kept = [(s, said) for s in sentences(response) if (said := mentions(s, among)) and _agrees(said, seed)]
    if not kept:
        return None, "unfocused"
    if required in FOCUS_ATTRIBUTES and not any(required in said for _, said in kept):
        return None, f"missing:{required}"
    return " ".join(s for s, _ in kept), None

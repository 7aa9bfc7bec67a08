"""Pure scoring functions: MMAU string match, label accuracy, WER/CER, instruction following.

Units: `accuracy` and `if_rate` are percentages (0-100); `wer`/`cer` are fractions (jiwer's
convention, can exceed 1); `forgetting_rate` is a ratio (unit-free).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from components.text import cer, normalize_transcript, strip_punctuation, wer  # noqa: F401 -- scorers re-export them

# --------------------------------------------------------------------------------------------
# MMAU
# --------------------------------------------------------------------------------------------

# Same tokeniser as the official MMAU evaluation.py: stdlib `re`, Unicode \w, after str.lower().
_MMAU_TOKEN = re.compile(r"\b\w+\b")


def mmau_tokens(text: str) -> set[str]:
    """The set of lower-cased word tokens MMAU's string match compares."""
    return set(_MMAU_TOKEN.findall(text.lower()))


def string_match(answer: str, prediction: str, choices: Sequence[str]) -> bool:
    """MMAU's rule: every answer token is in the prediction and no wrong-choice token is.

    A wrong-choice token only counts if the answer does not contain it, and a choice whose
    token set equals the answer's is not a wrong choice. A prediction without any word token
    (empty, punctuation only) never matches.
    """
    predicted = mmau_tokens(prediction)
    if not predicted:
        return False
    expected = mmau_tokens(answer)
    wrong: set[str] = set()
    for choice in choices:
        tokens = mmau_tokens(choice)
        if tokens != expected:
            wrong |= tokens - expected
    return expected <= predicted and predicted.isdisjoint(wrong)


# --------------------------------------------------------------------------------------------
# Classification accuracy
# --------------------------------------------------------------------------------------------


def normalize_label(text: str) -> str:
    """Label normalisation: NFKC, casefold, drop Unicode punctuation, collapse whitespace.

    "  Happy. " -> "happy"; "Non-binary" -> "nonbinary"; symbols such as "$" are kept.
    """
    text = strip_punctuation(unicodedata.normalize("NFKC", text).casefold())
    return " ".join(text.split())


def accuracy(preds: Sequence[str], labels: Sequence[str]) -> float:
    """Percentage of predictions equal to their label after `normalize_label`."""
    if len(preds) != len(labels):
        raise ValueError(f"{len(preds)} predictions but {len(labels)} labels")
    if not labels:
        raise ValueError("accuracy of zero examples is undefined")
    hits = sum(normalize_label(p) == normalize_label(y) for p, y in zip(preds, labels))
    return hits / len(labels) * 100


# --------------------------------------------------------------------------------------------
# Instruction following (Speech-IFEval rule checks)
# --------------------------------------------------------------------------------------------
# Kind names and semantics follow Speech-IFEval's modified IFEval checkers
# (kehanlu/Speech-IFEval, instruction_following_eval/instructions.py), strict mode.

_RELATIONS = ("less than", "at least")

# Stopword heuristic for response_language: no language-detection library is installed.
# Words listed for more than one language are dropped so that every hit is unambiguous.
_STOPWORDS_RAW = {
    "en": "the and is are was were of to in that it with for this you he she they have has not "
    "be on at by from what which would there their been will can an or we our your",
    "fr": "le la les des est et un une du dans que qui pour pas sur avec ce cette sont au aux il "
    "elle nous vous ils mais ou être été je ne se leur très aussi",
    "es": "el los las del es y una en por para con no su sus al lo como pero muy está son yo este "
    "esta también hay fue ser tiene",
    "de": "der die das und ist nicht ein eine zu den dem mit von sich auf für ich sie auch wird "
    "sind war dass aber oder wie noch nach bei einen",
}
_ALL_WORDS = [w for words in _STOPWORDS_RAW.values() for w in words.split()]
STOPWORDS: dict[str, frozenset[str]] = {
    lang: frozenset(w for w in words.split() if _ALL_WORDS.count(w) == 1)
    for lang, words in _STOPWORDS_RAW.items()
}
_LETTER_WORD = re.compile(r"[^\W\d_]+")


def detect_language(text: str) -> str | None:
    """Best of en/fr/es/de by distinct-stopword hits; None when no hits or a tie."""
    words = _LETTER_WORD.findall(text.casefold())
    hits = {lang: sum(w in stop for w in words) for lang, stop in STOPWORDS.items()}
    best = max(hits.values())
    winners = [lang for lang, n in hits.items() if n == best]
    return winners[0] if best > 0 and len(winners) == 1 else None


def count_words(text: str) -> int:
    r"""IFEval's word count: runs of \w (nltk RegexpTokenizer(r"\w+"))."""
    return len(re.findall(r"\w+", text))


def _compare(count: int, relation: str, threshold: int) -> bool:
    if relation not in _RELATIONS:
        raise ValueError(f"relation must be one of {_RELATIONS}, got {relation!r}")
    return count < threshold if relation == "less than" else count >= threshold


def _number_words(r: str, num_words: int, relation: str) -> bool:
    return _compare(count_words(r), relation, num_words)


def _lowercase(r: str) -> bool:
    # Speech-IFEval dropped IFEval's English-language check here; str.islower needs a cased letter.
    return r.islower()


def _uppercase(r: str) -> bool:
    return r.isupper()


def _json_format(r: str) -> bool:
    text = r.strip()
    for fence in ("```json", "```Json", "```JSON", "```"):
        text = text.removeprefix(fence)
    text = text.removesuffix("```").strip()
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


# Bullet lines as Speech-IFEval counts them: "* " (not "**"), "-", "•" or a leading digit.
_BULLETS = [re.compile(p, re.MULTILINE) for p in (r"^\s*\*[^*].*$", r"^\s*-.*$", r"^\s*•.*$", r"^\s*\d.*$")]


def count_bullets(text: str) -> int:
    """Number of bullet lines; a literal backslash-n is read as a newline, as upstream does."""
    text = text.replace("\\n", "\n")
    return sum(len(p.findall(text)) for p in _BULLETS)


def _number_bullet_lists(r: str, num_bullets: int) -> bool:
    return count_bullets(r) == num_bullets


def _response_language(r: str, language: str) -> bool:
    if language not in STOPWORDS:
        raise ValueError(f"language {language!r} not supported by the heuristic; use one of {sorted(STOPWORDS)}")
    if not _LETTER_WORD.search(r):
        return True  # nothing to detect: upstream counts langdetect failures as followed
    return detect_language(r) == language


def _keywords_existence(r: str, keywords: Sequence[str]) -> bool:
    # Case-insensitive substring, as upstream's re.search(keyword); escaped so "c++" is literal.
    return all(re.search(re.escape(k), r, flags=re.IGNORECASE) for k in keywords)


def _forbidden_words(r: str, forbidden_words: Sequence[str]) -> bool:
    return not any(re.search(rf"\b{re.escape(w)}\b", r, flags=re.IGNORECASE) for w in forbidden_words)


def _end_checker(r: str, end_phrase: str) -> bool:
    return r.strip().strip('"').lower().endswith(end_phrase.strip().lower())


def _repeat_prompt(r: str, prompt_to_repeat: str) -> bool:
    # Speech-IFEval uses this as "start with the given phrase".
    return r.strip().lower().strip("\"'").startswith(prompt_to_repeat.strip().lower())


def count_paragraphs(text: str) -> int | None:
    """Paragraphs split on '***' dividers or any newline; None if an inner paragraph is empty."""
    parts = re.split(r"\s*\*\*\*\s*|\n+", text.strip())
    count = len(parts)
    for i, part in enumerate(parts):
        if not part.strip():
            if 0 < i < len(parts) - 1:
                return None
            count -= 1
    return count


def _number_paragraphs(r: str, num_paragraphs: int) -> bool:
    return count_paragraphs(r) == num_paragraphs


def _quotation(r: str) -> bool:
    text = r.strip()
    return len(text) > 1 and text[0] == '"' and text[-1] == '"'


def _title(r: str) -> bool:
    return any(t.lstrip("<").rstrip(">").strip() for t in re.findall(r"<<[^\n]+>>", r))


# kind -> (checker, required kwargs)
INSTRUCTION_CHECKS: dict[str, tuple[Callable[..., bool], tuple[str, ...]]] = {
    "length_constraints:number_words": (_number_words, ("num_words", "relation")),
    "change_case:english_lowercase": (_lowercase, ()),
    "change_case:english_capital": (_uppercase, ()),
    "detectable_format:json_format": (_json_format, ()),
    "detectable_format:number_bullet_lists": (_number_bullet_lists, ("num_bullets",)),
    "language:response_language": (_response_language, ("language",)),
    "keywords:existence": (_keywords_existence, ("keywords",)),
    "keywords:forbidden_words": (_forbidden_words, ("forbidden_words",)),
    "startend:end_checker": (_end_checker, ("end_phrase",)),
    "combination:repeat_prompt": (_repeat_prompt, ("prompt_to_repeat",)),
    "length_constraints:number_paragraphs": (_number_paragraphs, ("num_paragraphs",)),
    "startend:quotation": (_quotation, ()),
    "detectable_format:title": (_title, ()),
}


def check_instruction(kind: str, kwargs: Mapping[str, Any] | None, response: str) -> bool:
    """Whether `response` follows one verifiable instruction (strict: a blank response fails).

    `kind` is a Speech-IFEval/IFEval instruction id (see INSTRUCTION_CHECKS); unknown kinds and
    missing kwargs raise ValueError. Extra kwargs are ignored.
    """
    if kind not in INSTRUCTION_CHECKS:
        raise ValueError(f"unsupported instruction kind {kind!r}; supported: {sorted(INSTRUCTION_CHECKS)}")
    checker, required = INSTRUCTION_CHECKS[kind]
    kwargs = kwargs or {}
    missing = [k for k in required if kwargs.get(k) is None]
    if missing:
        raise ValueError(f"{kind} needs kwargs {missing}")
    if not isinstance(response, str):
        raise TypeError(f"response must be a string, got {type(response).__name__}")
    if not response.strip():
        return False
    return checker(response, **{k: kwargs[k] for k in required})


def check_instructions(kinds: Sequence[str], kwargs_list: Sequence[Mapping[str, Any] | None], response: str) -> list[bool]:
    """Per-instruction results for one prompt (Speech-IFEval's `follow_instruction_list`)."""
    if len(kinds) != len(kwargs_list):
        raise ValueError(f"{len(kinds)} instruction ids but {len(kwargs_list)} kwargs")
    return [check_instruction(k, kw, response) for k, kw in zip(kinds, kwargs_list)]


def if_rate(results: Iterable[bool | Sequence[bool]]) -> float:
    """Instruction-following rate in percent, at instruction level.

    Items are bools or per-prompt lists of bools (flattened), so the figure equals
    Speech-IFEval's "ALL" line (followed instructions / instructions) times 100.
    """
    flat = [bool(x) for item in results for x in ([item] if isinstance(item, bool) else item)]
    if not flat:
        raise ValueError("IF rate of zero instructions is undefined")
    return sum(flat) / len(flat) * 100


def forgetting_rate(if_audio: float, if_text: float) -> float:
    """(IF_audio - IF_text) / IF_text: negative when the audio model follows fewer instructions.

    A ratio; Speech-IFEval's README shows it times 100 (e.g. -3.57 for 89.23 vs 92.53).
    """
    if if_text == 0:
        raise ValueError("forgetting rate is undefined when the text-only IF rate is 0")
    return (if_audio - if_text) / if_text

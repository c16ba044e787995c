"""Which option a free-form answer chose: "B", "(B)", "B.", "B) a dog", "The answer is B", or the option's
text itself. What cannot be read as exactly one option is None (counted wrong and listed, never guessed).

Rules, first match wins:
1. the answer starts with a letter standing alone: "B", "(B)", "B.", "B:", "B) …", "B. …", "[B]";
2. a phrase names it: "answer is B", "answer: (B)", "option B", "choice is B", "best option is B";
3. the answer is one option's text, or starts with it, or contains exactly one option's text;
4. exactly one distinct option letter stands alone anywhere in it ("I think C is right"), the English
   words "A" and "I" excepted where they read as words ("A dog", "I think"; not "A or B").
Letters are the first N capitals for N options; a letter beyond them never matches.
"""

from __future__ import annotations

import re

_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL | re.IGNORECASE)
_LEADING = re.compile(r"^[\s*_`\"'\[(]*([A-Z])(?:[\])}.:,;]|\s*$|\s+[-–—]|\s+\S)")
_PHRASE = re.compile(  # the words in any case, the letter a capital
    r"(?i:answer|option|choice)(?i:\s+(?:is|would be|should be|will be))?\s*(?:[:=]\s*)?[\s*_`\"'\[(]*"
    r"([A-Z])(?![A-Za-z])"
)
_JOINERS = frozenset(["or", "and", "is", "was", "seems", "because", "since", "but", "nor", "then"])
_STANDALONE = re.compile(r"(?<![A-Za-z'])([A-Z])(?![A-Za-z'])")


def extract_choice(answer: str | None, options: tuple[str, ...] | list[str]) -> str | None:
    """The chosen option's letter, or None when the answer does not name exactly one option."""
    if not answer:
        return None
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: len(options)]
    text = _THINK.sub("", answer).strip()
    if not text:
        return None
    return (
        _leading_letter(text, letters, options)
        or _phrase_letter(text, letters)
        or _option_text(text, letters, options)
        or _lone_letter(text, letters)
    )


def _leading_letter(text: str, letters: str, options: tuple[str, ...] | list[str]) -> str | None:
    match = _LEADING.match(text)
    if not match or match.group(1) not in letters:
        return None
    letter = match.group(1)
    rest = text[match.end(1) :]
    if rest[:1].isspace() and rest.strip() and rest.strip()[0].isalpha():
        # "A man walks in" is an article, not an answer, unless what follows is the option's own text
        option = options[letters.index(letter)]
        if not _normalise(rest).startswith(_normalise(option)[:20] or "\0"):
            return None
    return letter


def _phrase_letter(text: str, letters: str) -> str | None:
    found = [match.group(1) for match in _PHRASE.finditer(text)]
    found = [letter for letter in found if letter in letters]
    return found[-1] if found else None  # the last statement wins ("not A … the answer is C")


def _option_text(text: str, letters: str, options: tuple[str, ...] | list[str]) -> str | None:
    said = _normalise(text)
    normalised = [_normalise(option) for option in options]
    for index, option in enumerate(normalised):
        if option and (said == option or said.startswith(option + " ")):
            return letters[index]
    contained = [index for index, option in enumerate(normalised) if option and f" {option} " in f" {said} "]
    if len(contained) == 1:
        return letters[contained[0]]
    return None


def _lone_letter(text: str, letters: str) -> str | None:
    found = set()
    for match in _STANDALONE.finditer(text):
        letter = match.group(1)
        after = text[match.end() :]
        word = re.match(r"\s+([a-z]+)", after)
        if letter in "AI" and word and word.group(1) not in _JOINERS:
            continue  # "A dog", "I think": words, not options ("A or B", "A is right" are options)
        if letter in letters:
            found.add(letter)
    return found.pop() if len(found) == 1 else None


def _normalise(text: str) -> str:
    """Lower case, punctuation to spaces, single spaces: "A red car." and "a red car" compare equal."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())

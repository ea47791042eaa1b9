"""Loads the project's own lexicons (lexicons/es.json, en.json) into sets and precompiled patterns.

Word lists are expanded ("idiot(a|as)" -> idiota, idiotas) into frozensets for O(1) token lookups;
pattern lists are compiled once each, with token boundaries added and placeholders ({INSULT},
{GROUP}...) replaced by the word lists. Each pattern is filed under the words it must start with, so a
text only runs the patterns whose first word it contains (plus the few that can start anywhere):
that keeps a few hundred patterns at a few microseconds per text.
"""

import functools
import itertools
import json
import re
from dataclasses import dataclass, field
from importlib import resources

from tertulia.moderation.normalize import squeeze_doubles

LANGUAGES = ("es", "en")
_GROUP = re.compile(r"\(([^()]*)\)")
_PLACEHOLDER = re.compile(r"\{([A-Z_]+)\}")
_OPEN_GROUP = re.compile(r"\((?!\?)")
_LEADING_WORD = re.compile(r"^([a-zñ0-9]+)(?= |$|\( )")
_LEADING_GROUP = re.compile(r"^\(([a-zñ |]+)\)(?![?*])")


def expand(entry: str) -> list[str]:
    """All spellings of an entry: every group "(a|b|)" multiplies the forms."""
    parts: list[list[str]] = []
    position = 0
    for match in _GROUP.finditer(entry):
        parts.append([entry[position:match.start()]])
        parts.append(match.group(1).split("|"))
        position = match.end()
    parts.append([entry[position:]])
    return ["".join(choice).strip() for choice in itertools.product(*parts)]


def _words(entries: list[str]) -> list[str]:
    out: list[str] = []
    for entry in entries:
        out.extend(form for form in expand(entry) if form)
    return out


@dataclass(slots=True)
class Pattern:
    regex: re.Pattern
    weight: float
    source: str


@dataclass(slots=True)
class PatternSet:
    """Patterns filed by the first word they need; `anywhere` holds those that can start with anything."""

    by_word: dict[str, list[Pattern]] = field(default_factory=dict)
    anywhere: list[Pattern] = field(default_factory=list)

    def add(self, pattern: Pattern, keys: list[str] | None) -> None:
        if keys is None:
            self.anywhere.append(pattern)
            return
        for key in keys:
            self.by_word.setdefault(key, []).append(pattern)

    def search(self, text: str, tokens: set[str]) -> list[tuple[float, str]]:
        """(weight, matched text) for every pattern that matches, at most once each."""
        candidates: list[Pattern] = list(self.anywhere)
        seen = {id(p) for p in candidates}
        for token in tokens & self.by_word.keys():
            for pattern in self.by_word[token]:
                if id(pattern) not in seen:
                    seen.add(id(pattern))
                    candidates.append(pattern)
        hits = []
        for pattern in candidates:
            match = pattern.regex.search(text)
            if match:
                hits.append((pattern.weight, match.group(0).strip()))
        return hits


@dataclass(slots=True)
class Lexicon:
    """Both languages merged: people mix them, and a lookup in one more set costs nothing."""

    profanity_strong: frozenset[str]
    profanity_mild: frozenset[str]
    insult_tier: dict[str, str]  # word -> "strong" | "words" | "soft" | "adjective" | "you"
    slurs: frozenset[str]
    groups: frozenset[str]
    commerce: frozenset[str]
    stopwords: dict[str, frozenset[str]]
    second_person: frozenset[str]
    role_words: tuple[str, ...]
    patterns: dict[str, PatternSet]
    known: frozenset[str]  # every single-word entry of the word lists
    insult_heads: frozenset[str]  # first words of insults written in several words ("hijo de puta")
    common: frozenset[str]  # stopwords and shop words: never a disguise worth resolving
    # Words that must match even when written with a doubled letter squeezed ("fuuck" -> "fuck"),
    # or masked with * or #: by length, for the wildcard lookup.
    squeezed: dict[str, str]
    by_length: dict[int, tuple[str, ...]]

    def lookup(self, word: str) -> str | None:
        """The lexicon word a disguised spelling stands for (squeezed doubles or * masks), if any."""
        if "*" in word or "#" in word:
            for candidate in self.by_length.get(len(word), ()):
                if all(w in "*#" or w == c for w, c in zip(word, candidate, strict=True)):
                    return candidate
            return None
        return self.squeezed.get(squeeze_doubles(word))


_PATTERN_LISTS = ("profanity_phrases", "insult_patterns", "attack_patterns", "threat_patterns", "hate_patterns",
                  "promo_patterns", "contact_offer_patterns", "off_topic_markers")


def _alternation(words: list[str]) -> str:
    ordered = sorted(set(words), key=lambda w: (-len(w), w))
    return "(?:" + "|".join(re.escape(w) for w in ordered) + ")"


def _split_top(text: str) -> list[str]:
    parts, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "|" and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _closing(source: str) -> int:
    """Index of the parenthesis closing the one source starts with."""
    depth = 0
    for index, char in enumerate(source):
        depth += char == "("
        depth -= char == ")"
        if depth == 0:
            return index
    return len(source) - 1


def _keys(source: str, placeholders: dict[str, list[str]]) -> list[str] | None:
    """The words a text must contain for this pattern to have a chance; None when it could start anywhere."""
    source = source.lstrip("^")
    if not source:
        return None
    match = _LEADING_WORD.match(source)
    if match:
        return [match.group(1)]
    match = re.match(r"^\{([A-Z_]+)\}", source)
    if match:
        if match.group(1) not in placeholders:
            return None
        return sorted({word.split(" ")[0] for word in placeholders[match.group(1)]})
    if not source.startswith("("):
        return None
    end = _closing(source)
    inner, rest = source[1:end], source[end + 1:]
    optional = rest[:1] in ("?", "*")
    if optional:
        rest = rest[1:]
    keys: set[str] = set()
    for alternative in _split_top(inner):
        found = _keys((alternative + rest) if alternative else rest, placeholders) if not optional else \
            _keys(alternative, placeholders) if alternative.strip() else None
        if found is None:
            return None
        keys.update(found)
    if optional:
        found = _keys(rest.lstrip(" "), placeholders)
        if found is None:
            return None
        keys.update(found)
    return sorted(keys)


def _compile(source: str, weight: float, placeholders: dict[str, list[str]], alternations: dict[str, str]) -> Pattern:
    body = _OPEN_GROUP.sub("(?:", source)
    body = _PLACEHOLDER.sub(lambda m: alternations[m.group(1)], body)
    regex = re.compile(r"(?<![^ ])(?:" + body + r")(?![^ ])")
    return Pattern(regex=regex, weight=weight, source=source)


def _load_raw(language: str) -> dict:
    text = resources.files("tertulia.moderation.lexicons").joinpath(f"{language}.json").read_text("utf-8")
    return json.loads(text)


@functools.cache
def lexicon() -> Lexicon:
    raw = {language: _load_raw(language) for language in LANGUAGES}

    def merged(key: str) -> list[str]:
        return [word for language in LANGUAGES for word in _words(raw[language].get(key, []))]

    tier: dict[str, str] = {}
    # Later tiers must not demote a word listed as stronger elsewhere.
    for key, name in (("insult_second_person", "you"), ("insult_adjectives", "adjective"), ("insult_soft", "soft"),
                      ("insult_words", "words"), ("insult_strong", "strong")):
        for word in merged(key):
            tier[word] = name
    nouns = [w for w, t in tier.items() if t in ("strong", "words", "soft")]
    placeholders = {
        "INSULT": nouns,
        "INSULT_ANY": nouns + [w for w, t in tier.items() if t == "adjective"],
        "INSULT_YOU": list(tier),
        "GROUP": merged("groups") + merged("slurs"),
        "SLUR": merged("slurs"),
        "PROFANITY": merged("profanity_strong"),
    }
    alternations = {name: _alternation(words) for name, words in placeholders.items()}
    alternations["N"] = "[0-9]+"

    patterns: dict[str, PatternSet] = {}
    for key in _PATTERN_LISTS:
        pattern_set = PatternSet()
        for language in LANGUAGES:
            for item in raw[language].get(key, []):
                source, weight = (item, 0.5) if isinstance(item, str) else (item[0], float(item[1]))
                pattern_set.add(_compile(source, weight, placeholders, alternations), _keys(source, placeholders))
        patterns[key] = pattern_set

    strong = frozenset(merged("profanity_strong"))
    mild = frozenset(merged("profanity_mild"))
    slurs = frozenset(merged("slurs"))
    disguisable = [w for w in (*strong, *mild, *slurs, *tier, *merged("groups")) if " " not in w]
    squeezed: dict[str, str] = {}
    for word in sorted(disguisable, key=len, reverse=True):
        squeezed.setdefault(squeeze_doubles(word), word)
    by_length: dict[int, list[str]] = {}
    for word in sorted(set(disguisable)):
        by_length.setdefault(len(word), []).append(word)
    known = frozenset(disguisable)
    stop = {language: frozenset(_words(raw[language]["stopwords"])) for language in LANGUAGES}
    commerce = frozenset(merged("commerce_vocabulary"))
    return Lexicon(
        known=known,
        insult_heads=frozenset(w.split(" ")[0] for w in tier if " " in w),
        common=(stop["es"] | stop["en"] | commerce) - known,
        profanity_strong=strong,
        profanity_mild=mild,
        insult_tier=tier,
        slurs=slurs,
        groups=frozenset(placeholders["GROUP"]),
        commerce=commerce,
        stopwords=stop,
        second_person=frozenset(merged("second_person")),
        role_words=tuple(merged("role_words")),
        patterns=patterns,
        squeezed=squeezed,
        by_length={length: tuple(words) for length, words in by_length.items()},
    )

"""Text normalisation for matching: undo the tricks people use to slip words past a filter.

`normalize(text)` lower-cases, strips accents (keeping ñ, which tells "año" from "ano"), maps look-alike
letters from other scripts and full-width forms to Latin, decodes leetspeak inside words (m13rd4 ->
mierda), joins letters spelled out with spaces or dots (p.u.t.a, m i e r d a), squeezes runs of a
repeated letter (idiotaaaa -> idiota) and drops punctuation. Matching code looks words up in
`tokens`, phrases in `text` (tokens joined by one space), and the spelling variants of disguised
words in `variants`.

Speed matters (every submission and the 2,000 items/s bench pass through here): the per-character
work is one `str.translate` with a table built at import and a handful of precompiled regexes; only
tokens that look disguised get a second look.
"""

import re
import unicodedata
from dataclasses import dataclass, field

# Look-alike letters from Cyrillic and Greek that impersonate Latin ones (lower case; text is lowered first).
_CONFUSABLES = {
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
    "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d", "ɡ": "g", "ӏ": "l",
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "ω": "w", "ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "đ": "d", "ł": "l", "ħ": "h",
}
# Invisible characters used to split a word so it no longer matches: deleted.
_INVISIBLE = "\u00ad\u200b\u200c\u200d\u2060\ufeff\u180e"
# Leetspeak: only applied inside tokens that also hold letters, so "5 estrellas" and "100%" survive.
_LEET = {"4": "a", "@": "a", "3": "e", "€": "e", "1": "i", "!": "i", "|": "i", "0": "o", "5": "s", "$": "s",
         "7": "t", "+": "t"}


def _build_table() -> dict[int, str | None]:
    table: dict[int, str | None] = {}
    # Latin-1 supplement and Latin Extended-A/B: drop combining marks, keep ñ.
    for code in range(0x00C0, 0x0250):
        char = chr(code)
        if char in "ñÑ":
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
        if base and base != char and base.isascii():
            table[code] = base.lower()
    # Full-width ASCII (ｆｕｃｋ) to ASCII.
    for code in range(0xFF01, 0xFF5F):
        table[code] = chr(code - 0xFEE0).lower()
    for char, latin in _CONFUSABLES.items():
        table[ord(char)] = latin
    for char in _INVISIBLE:
        table[ord(char)] = None
    # Typographic apostrophes and dashes behave like their ASCII forms.
    for char in "\u2018\u2019\u02bc\u00b4`":
        table[ord(char)] = "'"
    for char in "\u2010\u2011\u2012\u2013\u2014\u2212":
        table[ord(char)] = "-"
    return table


_TABLE = _build_table()
_LEET_TABLE = str.maketrans(_LEET)
_LEET_CHARS = frozenset(_LEET)
_MASK_CHARS = frozenset("*#")

# A token: letters/digits, possibly with leet symbols or masks inside (sh!t, f*ck, m13rd4, @ss).
_TOKEN = re.compile(r"[@$€]?[^\W_]+(?:[@$€!|+*#]+[^\W_]*)*|[@$€]+[^\W_]+")
# Letters spelled out one by one: p.u.t.a / m-i-e-r-d-a (3+ letters) or m i e r d a (4+ letters, since
# "u r a" and "y a" are ordinary words with spaces).
_SPACED_PUNCT = re.compile(r"(?<![^\W_])(?:[^\W_][.\-_*·~/,]{1,2}){2,}[^\W_](?![^\W_])")
_SPACED_BLANK = re.compile(r"(?<![^\W_])(?:[^\W_] ){3,}[^\W_](?![^\W_])")
_RUN3 = re.compile(r"(.)\1{2,}")
_DOUBLE = re.compile(r"(.)\1")
_SEPARATORS = re.compile(r"[\s.\-_*·~/,]+")
_ONE_LETTER_WORDS = frozenset("yaoeu")  # Spanish words of one letter


@dataclass(slots=True)
class Normalized:
    raw: str
    text: str  # tokens joined by single spaces: for phrase patterns
    tokens: list[str]
    # Other readings of disguised tokens, by token position: "1" read as "l", letter runs squeezed to
    # two, masks (f*ck) kept for a wildcard lookup. Only tokens that looked disguised have entries.
    alternates: dict[int, tuple[str, ...]] = field(default_factory=dict)
    disguised: list[str] = field(default_factory=list)  # tokens as written that needed decoding


def _join_spaced(match: re.Match) -> str:
    joined = _SEPARATORS.sub("", match.group(0))
    # Joining only makes sense for a spelled-out word: mostly letters, not "1 2 3 4" or "a 1 b 2".
    letters = sum(ch.isalpha() for ch in joined)
    return joined if letters * 2 >= len(joined) and letters >= 3 else match.group(0)


def fold(text: str) -> str:
    """Lower case, accents stripped (ñ kept), look-alikes mapped; nothing else. Cheap."""
    return text.lower().translate(_TABLE)


_PUNCT_SPACED = frozenset("-.*_·/,~")


def normalize(text: str) -> Normalized:
    folded = fold(text)
    if not _PUNCT_SPACED.isdisjoint(folded):
        folded = _SPACED_PUNCT.sub(_join_spaced, folded)
    swallowed: set[str] = set()
    if " " in folded:
        def join_blank(match: re.Match) -> str:
            joined = _join_spaced(match)
            if joined != match.group(0) and joined[-1] in _ONE_LETTER_WORDS:
                swallowed.add(joined)  # "i d i o t a y" may be "idiota y"
            return joined
        folded = _SPACED_BLANK.sub(join_blank, folded)
    tokens: list[str] = []
    alternates: dict[int, tuple[str, ...]] = {}
    disguised: list[str] = []
    for token in _TOKEN.findall(folded):
        other: tuple[str, ...] = ()
        if not token.isalpha():
            token, other = _decode(token, disguised)
            if not token:
                continue
        if _RUN3.search(token):
            disguised.append(token)
            other = (*other, _RUN3.sub(r"\1\1", token))
            token = _RUN3.sub(r"\1", token)
        if swallowed and token in swallowed:
            other = (*other, token[:-1])
        if other:
            alternates[len(tokens)] = other
        tokens.append(token)
    return Normalized(raw=text, text=" ".join(tokens), tokens=tokens, alternates=alternates, disguised=disguised)


def _decode(token: str, disguised: list[str]) -> tuple[str, tuple[str, ...]]:
    """A token with digits or symbols in it: leet-decode it when it is a word in disguise."""
    letters = sum(ch.isalpha() for ch in token)
    if letters == 0:
        # Numbers, prices and "$$$" stay as they are (minus symbols that are not digits).
        return token.strip("@$€!|+*#"), ()
    has_leet = any(ch in _LEET_CHARS for ch in token)
    has_mask = any(ch in _MASK_CHARS for ch in token)
    if not has_leet and not has_mask:
        return token, ()
    if letters < 2 and not has_mask:
        # 4k, x2, 24h: units and sizes, not words.
        return token.strip("@$€!|+"), ()
    # Trailing "!" or "+" is punctuation ("wow!!", "18+"), not a letter.
    core = token.rstrip("!|+")
    decoded = core.translate(_LEET_TABLE)
    other: tuple[str, ...] = ()
    if "1" in core or "|" in core:
        other = (core.replace("1", "l").replace("|", "l").translate(_LEET_TABLE),)
    if has_mask:
        disguised.append(token)
        # The masked form stays the token; the lexicon's wildcard lookup resolves it.
        return decoded, (*other, decoded.strip("*#"))
    if decoded != core:
        disguised.append(token)
    return decoded, other


def squeeze_doubles(word: str) -> str:
    """Every doubled letter written once: a second reading for lookups (fuuck -> fuck, idiotaa -> idiota)."""
    return _DOUBLE.sub(r"\1", word)


def skeleton(name: str) -> str:
    """A display name reduced to what it looks like: folded, leet-decoded, only letters and digits.

    "Lucía Martín", "lucia_martin" and "LUCÍA MARTÍN" (Cyrillic А) share a skeleton; used to catch
    names that imitate staff, the brand or other members.
    """
    folded = fold(name)
    out = []
    for token in _TOKEN.findall(folded):
        if not token.isalpha() and any(ch.isalpha() for ch in token):
            token = token.translate(_LEET_TABLE)
        out.append(token)
    joined = "".join(out)
    # rn reads as m and vv as w in most fonts: the classic name-spoofing tricks.
    return _RUN3.sub(r"\1", joined.replace("rn", "m").replace("vv", "w"))

"""Which posts mention a store: normalised text and an Aho-Corasick automaton over words.

Text and terms go through the same `normalize`: lower case, accents and ñ/ç folded, every
punctuation mark a space except a leading # or @ (hashtags and handles stay one token). The
automaton's alphabet is the token, not the character, so a term only ever matches whole words
("sol" never fires inside "soldado") and a post costs one dict lookup per word whatever the number of
terms. Before walking the automaton, a set intersection with the words that can start a term (done in
C) drops the large majority of posts that mention nothing.

Exclude rules: a post that contains any excluded term is not a mention at all ("apple" tracked,
"apple pie" excluded). Everything here is pure: no database; `selectors.matcher_for_store` builds a
Matcher from a store's TrackedTerm rows.
"""

import unicodedata
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

KINDS = ("brand", "product", "sku", "hashtag", "competitor", "keyword")


def _fold_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for code in range(0x80, 0x250):
        char = chr(code)
        base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
        if base != char:
            table[code] = base.lower()
    table.update({ord("ß"): "ss", ord("æ"): "ae", ord("ø"): "o", ord("œ"): "oe", ord("ł"): "l", ord("đ"): "d"})
    # Punctuation and symbols separate words; # and @ are kept and read as a token prefix later.
    for code in range(0x20, 0x250):
        char = chr(code)
        if char in "#@":
            continue
        if unicodedata.category(char)[0] in "PSZC" and code not in table:
            table[code] = " "
    for extra in "\t\n\r\u2019\u2018\u201c\u201d\u2026\u00bf\u00a1\u2013\u2014\u00a0":
        table[ord(extra)] = " "
    return table


_FOLD = _fold_table()


def normalize(text: str) -> str:
    """Lower case, accents folded, punctuation as spaces (C-level str methods only)."""
    return text.lower().translate(_FOLD)


def tokens(text: str) -> list[str]:
    """Words of a text as the automaton reads them; a # or @ only counts at the start of a word."""
    out = []
    for word in normalize(text).split():
        if "#" in word[1:] or "@" in word[1:]:
            head = word[0] if word[0] in "#@" else ""
            parts = word[len(head):].replace("#", " ").replace("@", " ").split()
            if parts:
                out.append(head + parts[0])
                out.extend(parts[1:])
        elif word not in ("#", "@"):
            out.append(word)
    return out


@dataclass(frozen=True, slots=True)
class Term:
    term: str
    kind: str = "keyword"
    exclude: bool = False
    product_id: int | None = None
    term_id: int | None = None


@dataclass(frozen=True, slots=True)
class Match:
    term: Term
    start: int  # token index of the first word
    end: int  # token index after the last word


class Matcher:
    """An Aho-Corasick automaton over word tokens, built once per set of terms."""

    def __init__(self, terms: Iterable[Term]):
        self._goto: list[dict[str, int]] = [{}]
        self._out: list[list[tuple[Term, int]]] = [[]]
        self.terms: list[Term] = []
        for term in terms:
            words = tokens(term.term)
            if not words:
                continue
            self.terms.append(term)
            for variant in _variants(words, term.kind):
                self._add(variant, term)
        self._fail = self._links()
        self.first_words = frozenset(self._goto[0])
        self.has_exclude = any(t.exclude for t in self.terms)

    def _add(self, words: list[str], term: Term) -> None:
        state = 0
        for word in words:
            nxt = self._goto[state].get(word)
            if nxt is None:
                nxt = len(self._goto)
                self._goto.append({})
                self._out.append([])
                self._goto[state][word] = nxt
            state = nxt
        if all(existing is not term for existing, _ in self._out[state]):
            self._out[state].append((term, len(words)))

    def _links(self) -> list[int]:
        fail = [0] * len(self._goto)
        queue = deque(self._goto[0].values())
        while queue:
            state = queue.popleft()
            for word, nxt in self._goto[state].items():
                queue.append(nxt)
                back = fail[state]
                while back and word not in self._goto[back]:
                    back = fail[back]
                target = self._goto[back].get(word, 0)
                fail[nxt] = target if target != nxt else 0
                # Outputs of the longest proper suffix are outputs here too (computed in BFS order).
                self._out[nxt] = self._out[nxt] + [o for o in self._out[fail[nxt]] if o not in self._out[nxt]]
        return fail

    def find_tokens(self, words: list[str]) -> list[Match]:
        """Every occurrence of every term (include and exclude) in a tokenised text."""
        if self.first_words.isdisjoint(words):
            return []
        goto, fail, out = self._goto, self._fail, self._out
        found: list[Match] = []
        state = 0
        for index, word in enumerate(words):
            while True:
                nxt = goto[state].get(word)
                if nxt is not None:
                    state = nxt
                    break
                if state == 0:
                    break
                state = fail[state]
            for term, length in out[state]:
                found.append(Match(term=term, start=index + 1 - length, end=index + 1))
        return found

    def find(self, text: str) -> list[Match]:
        return self.find_tokens(tokens(text))

    def mentions(self, text: str) -> list[Match]:
        """The included terms a text mentions, or [] when it mentions none or hits an exclude rule."""
        words = tokens(text)
        if self.first_words.isdisjoint(words):
            return []
        found = self.find_tokens(words)
        if self.has_exclude and any(m.term.exclude for m in found):
            return []
        return [m for m in found if not m.term.exclude]


def _variants(words: list[str], kind: str) -> list[list[str]]:
    """The token sequences that count as the term: as written, and as a hashtag or handle.

    "Air Max" is also #airmax and @airmax; a hashtag term matches only as a hashtag.
    """
    if kind == "hashtag" or words[0][0] in "#@":
        if words[0][0] not in "#@":
            return [["#" + "".join(words)]]
        return [words] if len(words) == 1 else [words, [words[0] + "".join(words[1:])]]
    joined = "".join(words)
    out = [words, ["#" + joined], ["@" + joined]]
    if kind == "sku" and len(words) > 1:
        out.append([joined])  # AB-123 is also written AB123
    return out

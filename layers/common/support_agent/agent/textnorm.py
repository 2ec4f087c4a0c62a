"""Text normalisation for the triage guard: the guard's patterns see what a reader sees.

Two readings of a ticket are produced:

- `fold(text)`: Unicode-compatible lower case without accents — NFKC (full-width and mathematical
  letters), format characters removed (zero-width spaces and joiners, soft hyphens, bidi controls),
  Cyrillic/Greek/small-capital look-alikes mapped to the Latin letters they imitate, case folded,
  combining marks dropped (accents, strike-through and other overlays).
- `canonical(text)`: the folded text with obfuscation undone — digits and symbols used as letters inside
  words (r3fund, r€fund), letters spaced or split by punctuation (r e f u n d, r.e.f.u.n.d, re-fund,
  ref und), and misspelt keywords (complaitn, opperator) replaced by the keyword they are closest to.

Everything here is deterministic and costs microseconds per ticket; the keyword index is built once per
vocabulary.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

# Letters from other scripts that render like Latin ones (upper and lower case; before case folding).
_LOOKALIKES: dict[int, int | str | None] = {
    **str.maketrans(
        (
            "\u0410\u0411\u0412\u0421\u0500\u0415\u0401\u04ba\u041d\u0406\u0407\u0408\u041a\u041c\u041e\u0420"
            "\u051a\u0405\u0422\u0425\u0423\u040e\u051c\u0430\u0432\u0441\u0501\u0435\u0451\u04bb\u0456\u0457"
            "\u0458\u043a\u04cf\u043c\u043f\u043e\u0440\u051b\u0455\u0442\u0445\u0443\u045e\u051d\u044c\u0461"
            "\u0493\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039d\u039f\u03a1\u03a4\u03a5\u03a7\u03b1"
            "\u03b2\u03b3\u03b5\u03b7\u03b9\u03ba\u03bd\u03bf\u03c1\u03c4\u03c5\u03c7\u03c9\u1d00\u0299\u1d04"
            "\u1d05\u1d07\ua730\u0262\u029c\u026a\u1d0a\u1d0b\u029f\u1d0d\u0274\u1d0f\u1d18\u0280\ua731\u1d1b"
            "\u1d1c\u1d20\u1d21\u028f\u1d22\u04c0\u03f2\u03f3\u0131\u0237\u0140\u0142\u019a\u026b\u00f8\u00d8"
            "\u0111\u0110\u0127\u0167\u0180\u024d\u0251\u0261"
        ),
        "abbcdeehhiijkmopqstxyywabcdeehiijklmnopqstxyywbwfabezhikmnoptyxabyenikvoptuxwabcdefghijklmnoprstuvwyzlcjijllllooddhtbrag",
    ),
    **{ord(ch): latin for ch, latin in (("æ", "ae"), ("Æ", "ae"), ("œ", "oe"), ("Œ", "oe"), ("ß", "ss"))},
}

# Characters used as letters inside a word ("r3fund", "c0mpl@int", "$ue"), and what they stand for.
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
                       "@": "a", "$": "s", "€": "e", "£": "l", "|": "l", "!": "i", "+": "t"})  # fmt: skip
# A word with at least one letter and at least one character standing for a letter.
_LEET_WORD = re.compile(
    r"(?<![\w@$€£|!+])(?=[\w@$€£|!+]*[a-z])(?=[\w@$€£|!+]*[0-9@$€£|!+][a-z0-9])[\w@$€£|!+]*\w"
)
# Punctuation inside a word: "re-fund", "r.e.f.u.n.d", "comp_laint" (not spaces: those are handled below).
_INNER_PUNCT = re.compile(r"(?<=[a-z])[^\w\s]{1,3}(?=[a-z])|(?<=[a-z])_+(?=[a-z])")
# Three or more single letters (or characters standing for letters) in a row, separated by spaces or
# punctuation, at least two of them letters: "r e f u n d", "r-3-f-u-n-d".
_SPACED = re.compile(
    r"(?<![\w@$€])(?=(?:[^a-z]*[a-z]){2})[a-z0-9@$€](?:[^\w@$€]{1,3}[a-z0-9@$€](?![\w@$€])){2,}"
)
# A letter written three times or more: "reeefund", "heeelp".
_REPEATED = re.compile(r"([a-z])\1{2,}")
_TOKEN = re.compile(r"[a-z]+|[^a-z]+")


def fold(text: str) -> str:
    """Lower case, no accents, no invisible characters, look-alike letters mapped to Latin."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    text = text.translate(_LOOKALIKES).casefold().translate(_LOOKALIKES)
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def fold_pattern(pattern: str) -> str:
    """The same folding for a pattern's literal letters (regex syntax is ASCII, so it is unaffected)."""
    decomposed = unicodedata.normalize("NFKD", pattern.replace("ß", "ss"))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _deleted(word: str, depth: int) -> set[str]:
    """`word` with up to `depth` (at most 2) characters removed: the symmetric-deletion neighbourhood."""
    n = len(word)
    found = {word}
    if depth >= 1:
        found.update(word[:i] + word[i + 1 :] for i in range(n))
    if depth >= 2:
        found.update(word[:i] + word[i + 1 : j] + word[j + 1 :] for i in range(n) for j in range(i + 1, n))
    return found


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance (insert, delete, substitute, swap neighbours), capped at limit+1."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


def allowed_edits(word: str) -> int:
    """How many edits a misspelling of a keyword this long may have: none below 5 letters."""
    return 0 if len(word) < 5 else 1 if len(word) < 8 else 2


@dataclass(frozen=True)
class Speller:
    """Maps misspelt words to the nearest keyword; words in `keep` are real words and stay as written."""

    keywords: frozenset[str]
    keep: frozenset[str]
    _index: dict[str, list[str]]

    @classmethod
    def build(cls, keywords: Iterable[str], keep: Iterable[str] = ()) -> Speller:
        words = frozenset(w.casefold() for w in keywords)
        index: dict[str, list[str]] = {}
        for word in sorted(words):
            for variant in _deleted(word, allowed_edits(word)):
                index.setdefault(variant, []).append(word)
        return cls(words, frozenset(keep) - words, index)

    def correct(self, word: str) -> str:
        """The keyword `word` is a misspelling of, or `word` itself."""
        if len(word) < 5 or word in self.keywords or word in self.keep:
            return word
        best, best_distance = word, 3
        for variant in _deleted(word, 2 if len(word) >= 7 else 1):
            for keyword in self._index.get(variant, ()):
                limit = min(allowed_edits(keyword), allowed_edits(word))
                distance = edit_distance(word, keyword, limit)
                if distance <= limit and (distance, keyword) < (best_distance, best):
                    best, best_distance = keyword, distance
        return best


@lru_cache(maxsize=8)
def speller(keywords: tuple[str, ...], keep: tuple[str, ...]) -> Speller:
    return Speller.build(keywords, keep)


def _unleet(match: re.Match[str]) -> str:
    word = match.group(0)
    if word.isdigit():
        return word
    return word.translate(_LEET)


def canonical(folded: str, speller: Speller) -> str:
    """The folded text with leetspeak, spaced letters, split words and misspelt keywords undone."""
    text = _SPACED.sub(lambda m: re.sub(r"[^a-z0-9@$€]", "", m.group(0)), folded)
    text = _LEET_WORD.sub(_unleet, text)
    text = _INNER_PUNCT.sub("", text)
    text = _REPEATED.sub(r"\1", text)
    tokens = _TOKEN.findall(text)
    out: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token[0].isalpha():
            out.append(token)
            i += 1
            continue
        for n in (3, 2):  # a keyword split by spaces: "ref und", "com plai nt"
            parts, gaps = tokens[i : i + 2 * n - 1 : 2], tokens[i + 1 : i + 2 * n - 1 : 2]
            joined = "".join(parts)
            if (
                len(parts) == n
                and all(g.isspace() and len(g) <= 2 for g in gaps)
                and joined in speller.keywords
                and not all(p in speller.keywords for p in parts)
            ):
                out.append(joined)
                i += 2 * n - 1
                break
        else:
            out.append(speller.correct(token))
            i += 1
    return "".join(out)

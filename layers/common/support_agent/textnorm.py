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
_LOOKALIKE_PAIRS = (
    # Cyrillic
    "Aa" "Бb" "Вb" "Сc" "Ԁd" "Еe" "Ёe" "Һh" "Нh" "Іi" "Їi" "Јj" "Кk" "Ӏl" "Мm" "Оo" "Рp" "Ԛq" "Ѕs" "Тt"
    "Хx" "Уy" "Ўy" "Ԝw"
    "аa" "вb" "сc" "ԁd" "еe" "ёe" "һh" "іi" "їi" "јj" "кk" "ӏl" "мm" "пn" "оo" "рp" "ԛq" "ѕs" "тt" "хx"
    "уy" "ўy" "ԝw" "ьb" "ѡw"
    # Greek
    "Αa" "Βb" "Εe" "Ζz" "Ηh" "Ιi" "Κk" "Μm" "Νn" "Οo" "Ρp" "Τt" "Υy" "Χx"
    "αa" "βb" "γy" "εe" "ηn" "ιi" "κk" "νv" "οo" "ρp" "τt" "υu" "χx" "ωw" "ϲc" "ϳj"
    # Latin letters NFKD leaves alone, small capitals, dotless i
    "ıi" "ȷj" "ŀl" "łl" "ƚl" "ɫl" "øo" "Øo" "đd" "Đd" "ħh" "ŧt" "ƀb" "ɍr" "ʀr" "ᴀa" "ʙb" "ᴄc" "ᴅd" "ᴇe"
    "ғf" "ɢg" "ʜh" "ɪi" "ᴊj" "ᴋk" "ʟl" "ᴍm" "ɴn" "ᴏo" "ᴘp" "ꜱs" "ꜰf" "ᴛt" "ᴜu" "ᴠv" "ᴡw" "ʏy" "ᴢz" "ɑa" "ɡg"
)
_LOOKALIKES = {ord(pair[0]): pair[1] for pair in re.findall(r"..", _LOOKALIKE_PAIRS, re.S)}
_LOOKALIKES.update({ord("æ"): "ae", ord("Æ"): "ae", ord("œ"): "oe", ord("Œ"): "oe", ord("ß"): "ss"})

# Characters used as letters inside a word ("r3fund", "c0mpl@int", "$ue"), and what they stand for.
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
                       "@": "a", "$": "s", "€": "e", "£": "l", "|": "l", "!": "i", "+": "t"})  # fmt: skip
# A word with at least one letter and at least one character standing for a letter.
_LEET_WORD = re.compile(
    r"(?<![\w@$€£|!+])(?=[\w@$€£|!+]*[a-z])(?=[\w@$€£|!+]*[0-9@$€£|!+][a-z0-9])[\w@$€£|!+]*\w"
)
# Punctuation inside a word: "re-fund", "r.e.f.u.n.d", "comp_laint" (not spaces: those are handled below).
_INNER_PUNCT = re.compile(r"(?<=[a-z])[^\w\s]{1,3}(?=[a-z])|(?<=[a-z])_+(?=[a-z])")
# Three or more single letters in a row, separated by spaces or punctuation: "r e f u n d".
_SPACED = re.compile(r"(?<![a-z])[a-z](?:[^a-z0-9]{1,3}[a-z](?![a-z])){2,}")
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
    """`word` with up to `depth` characters removed (the symmetric-deletion neighbourhood)."""
    found = {word}
    frontier = {word}
    for _ in range(depth):
        frontier = {w[:i] + w[i + 1 :] for w in frontier for i in range(len(w))}
        found |= frontier
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
    _index: dict[str, tuple[str, ...]]

    @classmethod
    def build(cls, keywords: Iterable[str], keep: Iterable[str] = ()) -> Speller:
        words = frozenset(w.casefold() for w in keywords)
        index: dict[str, set[str]] = {}
        for word in sorted(words):
            for variant in _deleted(word, allowed_edits(word)):
                index.setdefault(variant, set()).add(word)
        return cls(words, frozenset(keep) - words, {k: tuple(sorted(v)) for k, v in index.items()})

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
    text = _LEET_WORD.sub(_unleet, folded)
    text = _INNER_PUNCT.sub("", text)
    text = _SPACED.sub(lambda m: re.sub(r"[^a-z]", "", m.group(0)), text)
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

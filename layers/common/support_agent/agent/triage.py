"""Triage: deterministic guard rules from the policy file, combined with a classification.

The classification comes from the model (structured, validated here) or, offline, from keyword rules.
The guard can only make the route stricter: if any guard category matches, the ticket goes to a human
whatever the classification says. A low-confidence classification also goes to a human.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from support_agent.agent import textnorm, triage_model
from support_agent.agent.triage_model import TriageModel
from support_agent.rules.policy import Policy

ESCALATION_CATEGORIES = frozenset(
    {
        "refund_request",
        "account_deletion",
        "billing_dispute",
        "complaint",
        "legal_or_regulatory",
        "human_request",
        "prompt_injection",
    }
)
AUTO_CATEGORIES = frozenset(
    {
        "password_reset",
        "order_status",
        "shipping",
        "order_change",
        "billing_question",
        "invoice_request",
        "refund_status",
        "refund_policy",
        "plan_question",
        "profile_update",
        "feature_question",
        "troubleshooting",
        "feedback",
        "general",
    }
)
Route = Literal["auto", "escalate"]
# The category of a ticket that only the learned check (not a rule, not the classifier) escalates.
LEARNED_CATEGORY = "learned_escalation"


class Classification(BaseModel):
    """What a classifier (the model or the offline rules) says about a ticket."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    category: str = Field(description="one of the escalation or auto categories")
    confidence: float = Field(ge=0, le=1)
    sentiment: Literal["positive", "neutral", "negative", "angry"] = "neutral"
    language: str = Field(default="en", pattern=r"^[a-z]{2}$")
    summary: str = Field(default="", max_length=300)


class TriageResult(BaseModel):
    model_config = ConfigDict(defer_build=True)

    route: Route
    category: str
    matched_rules: list[str]
    classification: Classification
    reason: str


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Words the guard's patterns are written with, in the spellings the patterns expect; a misspelling of
# one of them (within one edit for 5-7 letters, two from 8) is read as the word itself.
SPELLING_KEYWORDS: tuple[str, ...] = _words(
    """
    refund refunds refunded refunding reimburse reimbursed reimbursement chargeback compensation compensate
    complaint complaints complain complained complaining claim claims grievance reclamation
    dispute disputed disputing unauthorised unauthorized authorised authorized authorise authorize
    fraud fraudulent recognise recognize recognised recognized unrecognised unrecognized recognition
    withdrawal withdrawals withdrew withdrawn transaction transactions payment payments purchase
    charged charges twice duplicate duplicated debit debited
    account delete deleted deactivate terminate close closing cancel cancelling canceling
    human humans person people agent agents operator operators representative representatives supervisor
    manager someone somebody anyone anybody speak speaking
    lawyer lawyers attorney lawsuit solicitor regulator ombudsman
    instructions instruction ignore disregard previous override policy policies
    unacceptable disappointed dissatisfied terrible horrible outrageous ridiculous furious
    unknown unfamiliar suspicious strange unusual mistake
    """
)
# Real words that a keyword's misspelling rule would reach: they stay as written ("activate" is not
# "deactivate", "curious" is not "furious"). After changing SPELLING_KEYWORDS, list here the words of a
# English word list (Debian's wamerican, /usr/share/dict/american-english) that
# `Speller.build(SPELLING_KEYWORDS).correct` changes; tests/unit/test_triage.py checks the list against
# that file where it is installed.
SPELLING_KEEP: tuple[str, ...] = _words(
    """
    acceptable acclamation accounts activate aerators antone attorneys auspicious authored authoring
    authority authorizes bespeaking breaking cackling cancels cancer candling cankering canoeing
    cantering catcalling champlain chancel changed changeling changes channeling channelling chaplain
    charge charger chargers charles charmed charred charted chose clair clams clone cloning closed
    closer closes closet clove cloying cognition commendation commentate compensated compensates
    compensating compensations complacent complainant complainants complainer complainers complains
    complaisant compliant complied complying concealing conceding condensation construction
    constructions courageous creaking curious deactivated deactivates debated debits debut debuted
    declamation declamations declaration defended defending deletes delicate deplete depleted deputing
    destruction determinate diluting disappoint disappoints disgusted disgusting disported disporting
    disposed disposing disputant disputes disregarded disregards disrupted disrupting dissatisfies
    disusing duplicates duplicator duplicity emulator estrange exclamation explicate explicated
    exterminate familiar forcible frauds fraudulence fraudulently freaking freud garments gents
    germinate germinated germinates grievances haman homebody horribly horridly humane ignored ignores
    implicate implicated imputing instructing instructional instructive instructor instructors iterator
    iterators lawsuits layer layers losing manage managed managers manages manger mistaken mistakes
    moderator moderators obstruction obstructions ombudsmen operated operates operatic operation
    operations outrageously outrages overbite overdrive overprice overrate overridden overrides overripe
    overrode overrule oversize overtime overwrite paneling panelling parceling parcelling parson
    patients pavements peaking pearson peopled peoples peron persona persons pigments police polices
    policing polishes politics polities polity precious precognition previews previously proclamation
    purchased purchaser purchasers purchases reactivate reactivated reactivates rebinding rebounded
    rebounding recognizer recognizes recondition redounded redounding refining refueled refueling
    refusing refuting regulate regulated regulates regulation regulators regulatory reimbursements
    reimburses relaxation remanded remanding reminded reminding repayments replicate replicated
    representation representations rerunning resounded resounding rewinding ridicules ridiculously
    rounding sawyer sawyers shearing sleeking smearing sneak sneaking solicited solicitors solicitous
    solicits someones spanking sparking speaks spear spearing speccing speck specking speckling speeding
    spelling spending splaying spooking spraying spreading squeaking steak stealing steaming stranger
    strangle streaking superior supervise supervised supervises supervision supervisors supervisory
    supplicate supplicated surcease suspicion suspicions suspiciously swearing sweating tanager
    terminable terminal terminals terminated terminates terminator terribly transacting transition
    transitions translation translations trice tweaking twine unacceptably uncomplaining undisputed
    unknowns unrepresentative withdraw withdrawing withdraws withered wreaking
    """
)


@dataclass(frozen=True)
class _Category:
    name: str
    patterns: tuple[re.Pattern[str], ...]
    unless: tuple[re.Pattern[str], ...]

    def matches(self, text: str) -> list[int]:
        """Indexes of the patterns that match `text`, none when an `unless` pattern matches it too."""
        matched = [i for i, p in enumerate(self.patterns) if p.search(text)]
        if matched and any(p.search(text) for p in self.unless):
            return []
        return matched


@lru_cache(maxsize=8)
def _compiled(spec: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]) -> tuple[_Category, ...]:
    """The categories compiled once per process (compiling the patterns costs most of a cold start)."""

    def compiled(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
        return tuple(re.compile(textnorm.fold_pattern(p)) for p in patterns)

    return tuple(_Category(name, compiled(patterns), compiled(unless)) for name, patterns, unless in spec)


@dataclass
class Guard:
    """The policy file's triage categories, compiled.

    Patterns are matched against two readings of the ticket (see `support_agent.agent.textnorm`): the folded text
    (lower case, no accents or invisible characters, look-alike letters mapped to Latin) and its canonical
    form (leetspeak, spaced and split letters and misspelt keywords undone). A category matches when one
    reading matches one of its patterns and none of its `unless` patterns.
    """

    policy: Policy
    _categories: list[_Category] = field(init=False)
    _speller: textnorm.Speller = field(init=False)

    def __post_init__(self) -> None:
        spec = tuple(
            (name, tuple(category.patterns), tuple(category.unless))
            for name, category in self.policy.document.triage.categories.items()
        )
        self._categories = list(_compiled(spec))
        self._speller = textnorm.speller(SPELLING_KEYWORDS, SPELLING_KEEP)

    def readings(self, text: str) -> list[str]:
        """The texts the patterns are matched against (one when canonical adds nothing)."""
        folded = textnorm.fold(text)
        canonical = textnorm.canonical(folded, self._speller)
        return [folded] if canonical == folded else [folded, canonical]

    def check(self, text: str) -> list[str]:
        """Names of the rules that match, as `category[#pattern]`; empty when the guard lets it pass."""
        readings = self.readings(text)
        hits: list[str] = []
        for category in self._categories:
            matched = sorted({i for reading in readings for i in category.matches(reading)})
            hits.extend(f"{category.name}#{i}" for i in matched)
        return hits


# --- offline classifier ---------------------------------------------------------------------------------

_OFFLINE_RULES: tuple[tuple[str, str], ...] = (
    (
        "refund_status",
        r"\brefund\w*\b.*\b(status|track|anything new|progress|approved)|\b(status|track)\w*\b.*\brefund",
    ),
    (
        "refund_policy",
        r"\b(refund|money back)\w*\b.*\b(polic|case|circumstance|condition|how long)|refundable",
    ),
    (
        "password_reset",
        r"pass\s*word|passwd|\blog\s*-?\s*in\b|\blogin\b|sign\s*-?\s*in|locked\s+out|\breset\b|2fa|two.factor",
    ),
    ("invoice_request", r"invoice|receipt|bill\b|billing\s+statement|factura|rechnung|facture|fattura"),
    (
        "billing_question",
        r"payment|charge|billing|card|pay\b|paid|price|pricing|fee|cancellation\s+(fee|charge)",
    ),
    (
        "order_change",
        r"(cancel|change|modify|edit|update)\w*\s+(my\s+|the\s+|an\s+)?(last\s+)?(order|purchase)",
    ),
    ("order_status", r"\border\b|\btrack|package|parcel|deliver|pedido|bestellung|commande|ordine"),
    ("shipping", r"ship|address|courier|post(age|al)|envío|versand|livraison|spedizione"),
    ("plan_question", r"\bplan\b|upgrade|downgrade|subscription|trial|premium|pro\s+plan|seats?\b"),
    (
        "profile_update",
        r"(change|edit|update|modify|correct)\w*\s+(my\s+|the\s+)?(name|profile|info|information|data|details|account|email|notification)|newsletter|unsubscribe|notifications?|(turn|switch)\w*\s+(off|on)\b|switch\w*\s+(user|account)",
    ),
    (
        "troubleshooting",
        r"error|not\s+working|doesn.?t\s+work|broken|crash|bug|fail\w*|slow|sync|problem|issue",
    ),
    (
        "feature_question",
        r"how\s+(do|can|to)|feature|export|integrat|api\b|support\s+for|does\s+it|is\s+there\s+a\s+way|register|sign\s*up|create\s+an?\s+account|open\s+an?\s+account",
    ),
    ("feedback", r"review|feedback|suggest"),
)
_COMPILED_OFFLINE = tuple((name, re.compile(p, re.I)) for name, p in _OFFLINE_RULES)
_LANG_WORDS = {
    "es": {
        "el",
        "la",
        "de",
        "que",
        "mi",
        "por",
        "para",
        "con",
        "una",
        "hola",
        "gracias",
        "pedido",
        "cuenta",
        "no",
        "es",
    },
    "de": {
        "der",
        "die",
        "das",
        "und",
        "ich",
        "nicht",
        "mein",
        "meine",
        "bitte",
        "danke",
        "ist",
        "mit",
        "konto",
    },
    "fr": {
        "le",
        "la",
        "les",
        "et",
        "je",
        "mon",
        "ma",
        "est",
        "pas",
        "bonjour",
        "merci",
        "une",
        "pour",
        "compte",
    },
    "it": {"il", "la", "che", "non", "mio", "mia", "per", "grazie", "buongiorno", "sono", "una", "ordine"},
    "pt": {
        "o",
        "a",
        "que",
        "não",
        "meu",
        "minha",
        "para",
        "obrigado",
        "olá",
        "uma",
        "com",
        "conta",
        "pedido",
    },
    "nl": {
        "de",
        "het",
        "een",
        "ik",
        "niet",
        "mijn",
        "en",
        "is",
        "dank",
        "bedankt",
        "alstublieft",
        "bestelling",
    },
    "en": {"the", "and", "i", "my", "is", "to", "a", "of", "it", "you", "please", "thanks", "hi", "hello"},
}
_NEGATIVE = re.compile(
    r"\b(angry|furious|terrible|awful|horrible|worst|unacceptable|ridiculous|disgust\w*|hate|fed up|"
    r"not happy|unhappy|disappoint\w*|frustrat\w*|annoy\w*|fucking|bloody|damn)\b",
    re.I,
)


def detect_language(text: str) -> str:
    """Best-effort two-letter language code from common words (offline only)."""
    words = re.findall(r"[a-zà-ÿ]+", text.lower())
    scores = {lang: sum(w in vocab for w in words) for lang, vocab in _LANG_WORDS.items()}
    best = max(scores, key=lambda lang: scores[lang])
    return best if scores[best] > 0 else "en"


def offline_classify(text: str, guard_hits: list[str]) -> Classification:
    """Keyword classification used without a model; escalation categories come from the guard."""
    negative = bool(_NEGATIVE.search(text))
    sentiment: Literal["negative", "neutral"] = "negative" if negative else "neutral"
    language = detect_language(text)
    if guard_hits:
        category = guard_hits[0].split("#", 1)[0]
        return Classification(category=category, confidence=0.9, sentiment=sentiment, language=language)
    for name, pattern in _COMPILED_OFFLINE:
        if pattern.search(text):
            return Classification(category=name, confidence=0.8, sentiment=sentiment, language=language)
    return Classification(category="general", confidence=0.7, sentiment=sentiment, language=language)


@dataclass
class Triage:
    """Guard plus classifier: decides whether a ticket may be answered by the agent.

    `model` is the learned check (the shipped one by default, None for the rules alone): it can turn a
    route the rules and the classifier leave on auto into an escalation, never the reverse.
    """

    policy: Policy
    model: TriageModel | None = field(default_factory=triage_model.shipped)

    @cached_property
    def guard(self) -> Guard:
        return Guard(self.policy)

    @property
    def min_confidence(self) -> float:
        return self.policy.document.triage.min_confidence

    def decide(self, text: str, classification: Classification | None = None) -> TriageResult:
        """Route `text`; with no classification the offline classifier is used."""
        hits = self.guard.check(text)
        cls = classification or offline_classify(text, hits)
        if hits:
            category = hits[0].split("#", 1)[0]
            return TriageResult(
                route="escalate",
                category=category,
                matched_rules=hits,
                classification=cls,
                reason="guard rule",
            )
        if self.model is not None and self.model.escalates(self.guard.readings(text)[-1]):
            return TriageResult(
                route="escalate",
                category=cls.category if cls.category in ESCALATION_CATEGORIES else LEARNED_CATEGORY,
                matched_rules=["triage_model"],
                classification=cls,
                reason="learned check",
            )
        if cls.category in ESCALATION_CATEGORIES:
            return TriageResult(
                route="escalate",
                category=cls.category,
                matched_rules=[],
                classification=cls,
                reason="classifier",
            )
        if cls.category not in AUTO_CATEGORIES or cls.confidence < self.min_confidence:
            return TriageResult(
                route="escalate",
                category=cls.category,
                matched_rules=[],
                classification=cls,
                reason=f"classification below confidence {self.min_confidence} or unknown category",
            )
        return TriageResult(
            route="auto",
            category=cls.category,
            matched_rules=[],
            classification=cls,
            reason="no guard rule matched",
        )

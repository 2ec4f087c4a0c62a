"""Money as people read it, in the currency's own minor unit (Stripe's zero-decimal currencies included)."""

from __future__ import annotations

import re

# Currencies whose amounts are whole units (Stripe lists these as zero-decimal): 500 JPY is ¥500, not ¥5.
ZERO_DECIMAL = frozenset(
    {
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    }
)
SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "cad": "CA$", "aud": "A$", "chf": "CHF "}


def decimals(currency: str) -> int:
    """Digits after the point in `currency`'s minor unit."""
    return 0 if currency.lower() in ZERO_DECIMAL else 2


def money(amount: int, currency: str = "usd") -> str:
    """`19900, usd` → `$199`; `1250, usd` → `$12.50`; `500, jpy` → `¥500`; unknown codes are written out."""
    code = currency.lower()
    places = decimals(code)
    value = f"{amount / 10**places:,.{places}f}"
    if places and value.endswith(".00"):
        value = value[:-3]
    symbol = SYMBOLS.get(code)
    return f"{symbol}{value}" if symbol else f"{value} {code.upper()}"


def parse_amount(text: str, currency: str = "usd") -> int | None:
    """What a person typed (`12`, `$12.50`, `12,5`) in the minor unit; None if it is not an amount."""
    places = decimals(currency)
    symbol = re.escape(SYMBOLS.get(currency.lower(), "$").strip())
    fraction = r"(?:[.,](\d{1,2}))?" if places else ""
    match = re.fullmatch(rf"\s*(?:{symbol})?\s*(\d{{1,7}}){fraction}\s*", text or "")
    if not match:
        return None
    whole: int = int(match.group(1)) * 10**places
    return whole + (int((match.group(2) or "0").ljust(2, "0")) if places else 0)

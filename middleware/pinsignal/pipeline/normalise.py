"""Per-field normalisation and SHA-256 of Pinterest match keys (reference section 4.2).

    normalise("em", " Jane.Doe@Example.com ")         -> "jane.doe@example.com"
    normalise("ph", "+44 (0)20 7946 0958")            -> "442079460958"
    normalise("ph", "(415) 555-0123", default_country="US") -> "14155550123"
    hash_match_key("em", "Jane.Doe@Example.com")      -> "86e0b9e56c17cc4d...6133d" (64 hex)

Rules by target field:

``em``  trim, lowercase; needs one ``@`` with text either side and a dot in the domain.
``ph``  E.164 digits with the country code and no ``+`` (a maintained library, ``phonenumbers``,
        parses it; national numbers use ``default_country``; ``00`` prefixes and a national trunk
        ``(0)`` are understood); impossible numbers are dropped.
``fn``/``ln``  trim, lowercase; letters in any script are kept as UTF-8.
``ct``  lowercase, letters and digits only (``"Menlo Park"`` -> ``"menlopark"``).
``st``  two-letter code, lowercase; US, Canadian and Australian names map to their codes
        (``"California"`` -> ``"ca"``), ``US-CA`` style codes lose the country part.
``zp``  US ZIP (``94025``, ``94025-1234``, ``940251234``): the first five digits; elsewhere
        lowercase without spaces (``"SW1A 1AA"`` -> ``"sw1a1aa"``).
``country``  ISO 3166-1 alpha-2, lowercase; alpha-3 codes and English names map (``"Germany"``).
``ge``  ``f``, ``m`` or ``n`` from common spellings (``"Female"``, ``"woman"``, ``"non-binary"``).
``db``  ``YYYYMMDD`` from ``1990-05-26``, ``19900526``, ``05/26/1990`` (month first when the default
        country is US, else day first unless only one reading is a real date), ``26.05.1990``,
        ``26 May 1990``, ``May 26, 1990`` or an ISO date-time.
``external_id``, ``hashed_maids``  trim, lowercase.

Which normaliser a field takes is a column of the field table (``pinterest/fields.py``); the
functions are named there by the keys of :data:`NORMALISERS_BY_NAME`.

Every field: a value that already is a SHA-256 digest (64 hex characters) passes through,
lowercased, so nothing is hashed twice. Empty or invalid values give ``None`` and are dropped,
never hashed. ``click_id``, IP and user agent are never hashed and have no normaliser here.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import phonenumbers

from pinsignal.pinterest.fields import HASHED_FIELDS, NORMALISERS

__all__ = [
    "HASHED_FIELDS", "NORMALISERS_BY_NAME", "hash_match_key", "is_sha256", "match_key_hasher", "normalise",
    "sha256_hex",
]

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PLAIN_WORD = re.compile(r"[a-z0-9]+")
_US_ZIP = re.compile(r"(\d{5})(?:-?\d{4})?")
_POSTCODE = re.compile(r"[0-9a-z-]{2,12}")
_STATE_CODE = re.compile(r"(?:[a-z]{2}-)?([a-z0-9]{2,3})")
_MONTHS = {
    name: number
    for number, names in enumerate(
        (("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",),
         ("jun", "june"), ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"),
         ("oct", "october"), ("nov", "november"), ("dec", "december")),
        start=1,
    )
    for name in names
}
_GENDERS = {
    "f": "f", "female": "f", "woman": "f", "w": "f", "girl": "f", "femme": "f", "frau": "f", "mujer": "f",
    "weiblich": "f", "feminine": "f",
    "m": "m", "male": "m", "man": "m", "boy": "m", "homme": "m", "mann": "m", "hombre": "m", "mannlich": "m",
    "masculine": "m",
    "n": "n", "nonbinary": "n", "nb": "n", "enby": "n", "x": "n", "genderqueer": "n", "agender": "n",
    "divers": "n", "diverse": "n",
}

_PLACES = json.loads(Path(__file__).with_name("places.json").read_text(encoding="utf-8"))
_COUNTRIES: dict[str, str] = {key: code.lower() for key, code in _PLACES["countries"].items()}
_ALPHA2 = frozenset(_COUNTRIES.values())
_STATES: dict[str, str] = {}
for _table in _PLACES["states"].values():
    for _key, _code in _table.items():
        _STATES.setdefault(_key, _code.lower())


def sha256_hex(text: str) -> str:
    """Lowercase hex SHA-256 of the UTF-8 bytes of ``text``."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_sha256(text: str) -> bool:
    """True when ``text`` (after trimming) already is a 64-hex SHA-256 digest."""
    return len(text) >= 64 and _HEX64.fullmatch(text.strip()) is not None


def normalise(field: str, value: object, *, default_country: str = "US") -> str | None:
    """The normalised form of ``value`` for the user_data ``field``, or None when unusable.

    Raises ``KeyError`` for a field that is not one of :data:`HASHED_FIELDS`.
    """
    normaliser = _NORMALISERS[field]
    if type(value) is str:
        text = value
    elif type(value) is int:
        text = str(value)
    elif type(value) is float and value.is_integer():
        text = str(int(value))
    else:
        return None
    if len(text) >= 64 and _HEX64.fullmatch(stripped := text.strip()):
        return stripped.lower()
    return normaliser(text, default_country)


def hash_match_key(field: str, value: object, *, default_country: str = "US") -> str | None:
    """SHA-256 of the normalised value (a digest passes through lowercased); None when unusable.

    >>> hash_match_key("em", " Jane.Doe@Example.com ") == sha256_hex("jane.doe@example.com")
    True
    """
    text = normalise(field, value, default_country=default_country)
    if text is None:
        return None
    if len(text) == 64 and _HEX64.fullmatch(text):
        return text.lower()
    return sha256_hex(text)


def match_key_hasher(field: str, *, default_country: str = "US") -> Callable[[object], str | None]:
    """:func:`hash_match_key` for one field and country, resolved once (what pipelines call per event).

    Returning visitors send the same email and phone with every event, so the digests of the last
    few thousand strings are remembered (in this process's memory only, like the request itself).
    """
    normaliser = _NORMALISERS[field]
    sha256 = hashlib.sha256
    hex64 = _HEX64.fullmatch
    cache: dict[str, str | None] = {}

    def digest_of(text: str) -> str | None:
        if len(text) >= 64 and hex64(stripped := text.strip()):
            return stripped.lower()
        normalised = normaliser(text, default_country)
        if normalised is None:
            return None
        if len(normalised) == 64 and hex64(normalised):
            return normalised.lower()
        return sha256(normalised.encode("utf-8")).hexdigest()

    def hasher(value: Any) -> str | None:
        kind = type(value)
        if kind is str:
            digest: str | None = cache.get(value, _MISSING)
            if digest is _MISSING:
                digest = digest_of(value)
                if len(cache) >= _HASH_CACHE_SIZE:
                    cache.clear()
                cache[value] = digest
            return digest
        if kind is int:
            return digest_of(str(value))
        if kind is float and value.is_integer():
            return digest_of(str(int(value)))
        return None

    return hasher


_MISSING: Any = object()
_HASH_CACHE_SIZE = 4096


# ------------------------------------------------------------------ per field


def _lookup_key(text: str) -> str:
    lowered = text.casefold()
    if _PLAIN_WORD.fullmatch(lowered):
        return lowered
    decomposed = unicodedata.normalize("NFKD", lowered)
    return "".join(ch for ch in decomposed if ch.isalnum() and not unicodedata.combining(ch))


def _email(text: str, country: str) -> str | None:
    email = text.strip().lower()
    return email if _EMAIL.fullmatch(email) else None


def _name(text: str, country: str) -> str | None:
    name = text.strip().lower()
    return name or None


def _city(text: str, country: str) -> str | None:
    lowered = text.lower()
    city = lowered if _PLAIN_WORD.fullmatch(lowered) else "".join(ch for ch in lowered if ch.isalnum())
    return city or None


def _state(text: str, country: str) -> str | None:
    lowered = text.strip().lower()
    match = _STATE_CODE.fullmatch(lowered)
    if match:
        return match.group(1)
    return _STATES.get(_lookup_key(lowered))


def _zip(text: str, country: str) -> str | None:
    compact = text.strip().lower().replace(" ", "")
    us = _US_ZIP.fullmatch(compact)
    if us:
        return us.group(1)
    return compact if _POSTCODE.fullmatch(compact) else None


def _country(text: str, country: str) -> str | None:
    key = _lookup_key(text)
    if len(key) == 2:
        return key if key in _ALPHA2 else None
    return _COUNTRIES.get(key)


def _gender(text: str, country: str) -> str | None:
    return _GENDERS.get(_lookup_key(text))


def _lowercase_id(text: str, country: str) -> str | None:
    ident = text.strip().lower()
    return ident or None


def _phone(text: str, country: str) -> str | None:
    text = text.strip()
    # North American numbers (most of what US shops see) have one unambiguous E.164 form, so the
    # library is needed only for everything else: "+1 (415) 555-0123", "415.555.0123" -> 14155550123.
    if text.startswith("+1") or country in _NANP:
        digits = text.translate(_PHONE_PUNCTUATION)
        if digits.isdigit() and digits.isascii():
            if len(digits) == 11 and digits[0] == "1" and digits[1] in "23456789":
                return digits
            if len(digits) == 10 and digits[0] in "23456789" and not text.startswith("+"):
                return "1" + digits
    return _phone_cached(text, country)


@lru_cache(maxsize=8192)
def _phone_cached(text: str, country: str) -> str | None:
    # Repeat visitors send the same number with every event; parsing costs ~15 µs, so it is cached.
    if not text or len(text) > 64:
        return None
    candidates = [text]
    digits = "".join(ch for ch in text if ch.isdigit())
    if text.startswith("00"):
        candidates.insert(0, "+" + text[2:])
    elif not text.startswith("+") and len(digits) > 10:
        # "447911123456": already has a country code, only the "+" is missing.
        candidates.append("+" + digits)
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, None if candidate.startswith("+") else country)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number_with_reason(number) == phonenumbers.ValidationResult.IS_POSSIBLE:
            return f"{number.country_code}{phonenumbers.national_significant_number(number)}"
    return None


# Regions of the North American Numbering Plan (country code 1).
_NANP = frozenset(region for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(1, ()))
_PHONE_PUNCTUATION = str.maketrans("", "", " +-().")


def _birthday(text: str, country: str) -> str | None:
    day = _parse_date(text.strip().lower(), month_first=country == "US")
    if day is None or not 1900 <= day.year <= date.today().year:
        return None
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


def _parse_date(text: str, *, month_first: bool) -> date | None:
    if len(text) == 8 and text.isdigit():
        return _date(int(text[:4]), int(text[4:6]), int(text[6:]))
    if "t" in text and text[:4].isdigit():
        try:
            return datetime.fromisoformat(text.upper()).date()
        except ValueError:
            return None
    parts = [part for part in re.split(r"[\s/.,-]+", text) if part]
    if len(parts) != 3:
        return None
    words = [part for part in parts if not part.isdigit()]
    if words:
        month = _MONTHS.get(words[0].rstrip("."))
        numbers = [int(part) for part in parts if part.isdigit()]
        if len(words) != 1 or month is None or len(numbers) != 2:
            return None
        first, second = numbers
        return _date(second, month, first) if second > 31 else _date(first, month, second)
    a, b, c = (int(part) for part in parts)
    if len(parts[0]) == 4:
        return _date(a, b, c)
    if len(parts[2]) != 4:
        return None
    if "." in text:
        return _date(c, b, a)  # 26.05.1990 is day first everywhere it is written that way
    month_day, day_month = _date(c, a, b), _date(c, b, a)
    if month_day and day_month:
        return month_day if month_first else day_month
    return month_day or day_month


def _date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


NORMALISERS_BY_NAME: dict[str, Callable[[str, str], str | None]] = {
    "email": _email,
    "phone": _phone,
    "name": _name,
    "gender": _gender,
    "birthday": _birthday,
    "city": _city,
    "state": _state,
    "zip": _zip,
    "country": _country,
    "lowercase": _lowercase_id,
}
"""The normalisers the field table names: ``(text, default_country) -> normalised text or None``."""

_NORMALISERS = {field: NORMALISERS_BY_NAME[name] for field, name in NORMALISERS.items()}

#!/usr/bin/env python3
"""Regenerate ``middleware/pinsignal/pipeline/places.json`` (country and state name tables).

    .venv/bin/python scripts/make_places.py [/usr/share/iso-codes/json]

The tables map a *lookup key* (lowercase, accents removed, letters and digits only) to an ISO code:
countries by English name, common name, official name and alpha-3 code (plus a few everyday
aliases such as "usa", "uk", "england"); states and provinces of the US, Canada and Australia by
name. The data comes from Debian's ``iso-codes`` package (ISO 3166-1 and 3166-2).
"""

from __future__ import annotations

import json
import sys
import unicodedata
from pathlib import Path

TARGET = Path(__file__).resolve().parent.parent / "middleware" / "pinsignal" / "pipeline" / "places.json"
STATE_COUNTRIES = ("US", "CA", "AU")
COUNTRY_ALIASES = {
    "america": "US", "unitedstatesofamerica": "US", "us": "US", "usa": "US", "uk": "GB", "greatbritain": "GB",
    "britain": "GB", "england": "GB", "scotland": "GB", "wales": "GB", "northernireland": "GB",
    "deutschland": "DE", "holland": "NL", "thenetherlands": "NL", "espana": "ES", "italia": "IT",
    "schweiz": "CH", "suisse": "CH", "osterreich": "AT", "brasil": "BR", "mexico": "MX", "russia": "RU",
    "southkorea": "KR", "korea": "KR", "northkorea": "KP", "vietnam": "VN", "laos": "LA", "uae": "AE",
    "czechia": "CZ", "czechrepublic": "CZ", "turkey": "TR", "turkiye": "TR", "ivorycoast": "CI",
    "nippon": "JP", "prc": "CN",
}
STATE_ALIASES = {"US": {"washingtondc": "DC", "dc": "DC"}}


def key(text: str) -> str:
    """The lookup key: what pinsignal.pipeline.normalise computes from user input."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if ch.isalnum() and not unicodedata.combining(ch))


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else Path("/usr/share/iso-codes/json")
    countries: dict[str, str] = {}
    for entry in json.loads((source / "iso_3166-1.json").read_text(encoding="utf-8"))["3166-1"]:
        code = entry["alpha_2"]
        for name in (entry["alpha_3"], entry["name"], entry.get("common_name"), entry.get("official_name")):
            if name:
                countries.setdefault(key(name), code)
        if "," in entry["name"]:  # "Korea, Republic of" is also written "Republic of Korea"
            head, _, tail = entry["name"].partition(",")
            countries.setdefault(key(f"{tail} {head}"), code)
    countries.update(COUNTRY_ALIASES)
    states: dict[str, dict[str, str]] = {country: {} for country in STATE_COUNTRIES}
    for entry in json.loads((source / "iso_3166-2.json").read_text(encoding="utf-8"))["3166-2"]:
        country, _, code = entry["code"].partition("-")
        if country in states:
            states[country][key(entry["name"])] = code
    for country, aliases in STATE_ALIASES.items():
        states[country].update(aliases)
    document = {
        "source": "Debian iso-codes (ISO 3166-1, ISO 3166-2), keys from scripts/make_places.py key()",
        "countries": dict(sorted(countries.items())),
        "states": {country: dict(sorted(table.items())) for country, table in states.items()},
    }
    TARGET.write_text(json.dumps(document, indent=0, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {TARGET}: {len(countries)} country keys, {sum(map(len, states.values()))} state keys")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

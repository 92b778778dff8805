from __future__ import annotations

import pytest

from pinsignal.bots import BotFilter

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"


@pytest.mark.parametrize(("agent", "bot"), [
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", True),
    ("Pinterestbot/1.0 (+http://www.pinterest.com/bot.html)", True),
    ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", True),
    ("curl/8.5.0", True),
    (CHROME, False),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.4 Mobile/15E148 Safari/604.1", False),
    (None, False),
    ("", False),
])
def test_known_crawlers(agent: str | None, bot: bool) -> None:
    assert BotFilter().is_bot(agent) is bot


def test_verdicts_are_cached() -> None:
    bots = BotFilter()
    assert bots.is_bot("Googlebot/2.1") is True
    bots._detector = None  # type: ignore[assignment]  # a second look must not need the detector
    assert bots.is_bot("Googlebot/2.1") is True

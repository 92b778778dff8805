"""Known crawlers produce no events (``reference/peers.md`` pain point B5: bots inflate server-side
counts that the Pinterest Tag never sees, and merchants switch the integration off).

The list is the maintained ``crawlerdetect`` package, not a hand-written regex. Matching one user
agent costs a few hundred microseconds, and the same few agents repeat, so verdicts are cached.
"""

from __future__ import annotations

from crawlerdetect import CrawlerDetect

__all__ = ["BotFilter"]

_CACHE_LIMIT = 8192
_MAX_AGENT_LENGTH = 2048


class BotFilter:
    """``is_bot(user_agent)``: whether a request comes from a known crawler (cached)."""

    def __init__(self) -> None:
        self._detector = CrawlerDetect()
        self._verdicts: dict[str, bool] = {}

    def is_bot(self, user_agent: str | None) -> bool:
        if not user_agent:
            return False  # no agent at all: a server-side caller, judged by its other fields
        verdict = self._verdicts.get(user_agent)
        if verdict is None:
            verdict = bool(self._detector.isCrawler(user_agent[:_MAX_AGENT_LENGTH]))
            if len(self._verdicts) >= _CACHE_LIMIT:
                self._verdicts.clear()
            self._verdicts[user_agent] = verdict
        return verdict

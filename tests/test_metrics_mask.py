"""The match-key mask remembered per shape of ``user_data`` against the computation it replaced."""

from __future__ import annotations

import itertools
from typing import Any

from pinsignal.metrics import _mask_of, match_key_mask
from pinsignal.pinterest.fields import MATCH_KEY_FIELDS

KEYS = [key for _, group in MATCH_KEY_FIELDS for key in group] + ["fn", "ge"]
VALUES: list[Any] = ["x", ["a" * 64], "", [], None, 0, 1]


def test_the_remembered_mask_is_the_computed_one_for_every_shape_and_value() -> None:
    for size in range(4):
        for names in itertools.permutations(KEYS[:6], size):
            for values in itertools.product(VALUES, repeat=size):
                user = dict(zip(names, values, strict=True))
                event = {"event_name": "checkout", "event_id": "e", "user_data": user}
                assert match_key_mask(event) == _mask_of(user), user
                assert match_key_mask(event) == _mask_of(user), user  # remembered the second time
    # every key set, in two orders: one shape each, the same mask
    full = {key: "x" for key in KEYS}
    assert match_key_mask({"user_data": full}) == match_key_mask({"user_data": dict(reversed(full.items()))}) \
        == _mask_of(full) == (1 << len(MATCH_KEY_FIELDS)) - 1
    assert match_key_mask({"user_data": None}) == match_key_mask({}) == 0

"""Seeded request bodies for the model server, each with whether it is valid.

Made for the test model of ``_server.small_model`` (integer user ids 0..49, 200
items). A body is valid when every part of it is; one hostile part (an id such as
``"²"``, a k out of range, an extra key, broken JSON, an oversized body) makes it
invalid, and the server must answer it with a 4xx, never a 5xx.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

N_ITEMS = 200
MAX_WORK = 100_000
BODY_LIMIT = 1 << 20

GOOD_IDS: list[Any] = [0, 1, 3, 17, 49, "0", "3", "49", 10**6, -5, "123456", 2**63 - 1, -(2**63)]
BAD_IDS: list[Any] = [
    "²", "³", "١٢٣", "٣", "𝟙", "9" * 4301, "stranger", "", " 3", "+3", "3\n", "1e3", "0x1f", "--1", "\u0000",
    "9" * 20, 2**63, -(2**63) - 1, 10**30, 1.0, 1.5, -0.0, True, False, [], [1], {}, {"id": 1}, "x" * 300,
]
GOOD_K: list[Any] = [1, 2, 10, 50, 199, 200]
BAD_K: list[Any] = [0, -1, 201, 1000, 1001, 10**20, "5", 5.0, 2.5, True, None, [], "ten"]
GOOD_EXCLUDE: list[Any] = [True, False]
BAD_EXCLUDE: list[Any] = ["maybe", 2, 0.5, [], {}, None]


def _pick(rng: random.Random, good: list[Any], bad: list[Any], p_bad: float) -> tuple[Any, bool]:
    if rng.random() < p_bad:
        return rng.choice(bad), False
    return rng.choice(good), True


def _body(rng: random.Random) -> tuple[Any, bool]:
    shape = rng.random()
    k, k_ok = _pick(rng, GOOD_K, BAD_K, 0.25)
    body: dict[str, Any] = {}
    valid = k_ok
    if rng.random() < 0.8:
        body["k"] = k
    else:
        valid = True  # k left out: the default (10)
        k = 10
    if rng.random() < 0.3:
        body["exclude_seen"], ok = _pick(rng, GOOD_EXCLUDE, BAD_EXCLUDE, 0.3)
        valid &= ok
    if shape < 0.45:  # one user
        uid, ok = _pick(rng, GOOD_IDS, BAD_IDS, 0.4)
        body["user_id"] = uid
        return body, valid and ok
    if shape < 0.85:  # a batch
        size = rng.choice([1, 2, 5, 20, 100, 1000, 1001, 0])
        ids, ok = [], size <= 1000 and size > 0
        p_bad = rng.choice([0.0, 0.0, 0.01, 0.3])
        for _ in range(size):
            uid, good = _pick(rng, GOOD_IDS, BAD_IDS, p_bad)
            ids.append(uid)
            ok &= good
        body["user_ids"] = ids
        within = size * (k if isinstance(k, int) and not isinstance(k, bool) else 1) <= MAX_WORK
        return body, valid and ok and within
    if shape < 0.9:  # both, or neither
        if rng.random() < 0.5:
            body.update(user_id=1, user_ids=[1])
        return body, False
    if shape < 0.95:  # a key the API does not have
        body.update(user_id=1, **{rng.choice(["extra", "users", "K", "user", "__class__"]): 1})
        return body, False
    return rng.choice([[], [1], "user 1", 1, None, True, {"user_ids": None}, {"user_id": None}]), False


def _raw(rng: random.Random) -> bytes:
    """Bodies that are not (acceptable) JSON at all."""
    kind = rng.randrange(9)
    if kind == 0:
        return b"\x80\x04K\x01."  # a pickle
    if kind == 1:
        return b'{"user_id": "\xff\xfe"}'  # not UTF-8
    if kind == 2:
        return b'{"user_ids": [1, 2, 3'  # truncated
    if kind == 3:
        return b"[" * 50_000  # deeply nested
    if kind == 4:
        return b'{"user_id": ' + b"9" * 5000 + b"}"  # an integer literal Python will not parse
    if kind == 5:
        return b'{"user_id": NaN}'
    if kind == 6:
        return b'{"user_id": 1, "user_id": "\xc2\xb2"}'  # a duplicate key, the last one hostile
    if kind == 7:
        return b""
    return b'{"user_ids": [' + b"1, " * (BODY_LIMIT // 3 + 10) + b"1]}"  # over the size limit


def fuzz_bodies(seed: int, n: int) -> Iterator[tuple[bytes, bool]]:
    """``n`` request bodies (raw bytes) and whether each is valid; the same for the same seed."""
    rng = random.Random(seed)
    for _ in range(n):
        if rng.random() < 0.1:
            yield _raw(rng), False
        else:
            body, valid = _body(rng)
            yield json.dumps(body).encode(), valid

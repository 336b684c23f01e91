"""The introspection cache: bounded in size and time, never past a token's exp."""

from __future__ import annotations

from mailwarden.oauth2.cache import IntrospectionCache
from mailwarden.oauth2.claims import TokenIdentity

ALICE = TokenIdentity(username="alice", expires_at=1000.0)
FOREVER = TokenIdentity(username="bob")


def test_an_entry_lives_until_exp_or_ttl_whichever_is_first() -> None:
    cache = IntrospectionCache(size=10, ttl=100.0)
    cache.put("t1", ALICE, now=950.0)
    cache.put("t2", FOREVER, now=950.0)
    assert cache.get("t1", 999.0) == ALICE
    assert cache.get("t1", 1000.0) is None
    assert cache.get("t2", 1049.0) == FOREVER
    assert cache.get("t2", 1050.0) is None
    assert len(cache) == 0


def test_an_expired_token_is_not_remembered() -> None:
    cache = IntrospectionCache(size=10, ttl=100.0)
    cache.put("t1", ALICE, now=1000.0)
    assert len(cache) == 0


def test_a_full_cache_drops_the_oldest_entries() -> None:
    cache = IntrospectionCache(size=10, ttl=100.0)
    for i in range(25):
        cache.put(f"t{i}", FOREVER, now=0.0)
        assert len(cache) <= 10
    assert cache.get("t24", 1.0) == FOREVER
    assert cache.get("t0", 1.0) is None


def test_size_or_ttl_zero_turns_it_off() -> None:
    for cache in (IntrospectionCache(size=0, ttl=100.0), IntrospectionCache(size=10, ttl=0.0)):
        cache.put("t1", FOREVER, now=0.0)
        assert cache.get("t1", 0.0) is None


def test_the_tokens_themselves_are_not_kept() -> None:
    cache = IntrospectionCache(size=10, ttl=100.0)
    cache.put("opaque-secret", FOREVER, now=0.0)
    assert all(b"opaque-secret" not in key for key in cache._entries)

"""Counts that tests record and the terminal summary prints (see conftest.py)."""

from __future__ import annotations

import pytest

ROUND_TRIPPED = pytest.StashKey[set[str]]()
RPC_KINDS = pytest.StashKey[set[str]]()
RPC_KINDS_MISSING = pytest.StashKey[set[str]]()


def record(config: pytest.Config, key: pytest.StashKey[set[str]], item: str) -> None:
    config.stash.setdefault(key, set()).add(item)


def _items(config: pytest.Config, key: pytest.StashKey[set[str]]) -> list[str]:
    found: set[str] = config.stash.get(key, set())
    return sorted(found)


def summary(config: pytest.Config) -> list[str]:
    lines = []
    if ROUND_TRIPPED in config.stash:
        lines.append(f"round-tripped {len(config.stash[ROUND_TRIPPED])} message types")
    if RPC_KINDS in config.stash or RPC_KINDS_MISSING in config.stash:
        kinds = _items(config, RPC_KINDS)
        line = f"RPC kinds exercised: {len(kinds)} ({', '.join(kinds)})"
        missing = _items(config, RPC_KINDS_MISSING)
        if missing:
            line += f"; not in the module, so not exercised: {', '.join(missing)}"
        lines.append(line)
    return lines

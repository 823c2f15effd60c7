"""Task functions a user might point the harness at with --task / kew_harness(task=...)."""

from __future__ import annotations


def word_stats(i: int) -> dict[str, object]:
    word = f"w{i:05d}"
    return {"word": word, "length": len(word), "digits": [int(c) for c in word[1:]]}


def wrong_on_other_processes(i: int) -> int:
    """Returns the pid-dependent value: differs between submitter and worker processes."""
    import os

    return os.getpid() + i

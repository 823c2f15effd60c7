"""Constants the child processes and the checker share (the checker must not import the
child module, which pulls in the worker)."""

from __future__ import annotations

from kew_plug.retry import RetryPolicy

#: Retry backoff of the harness's workers; the retry scenario checks retries against it.
RETRY_POLICY = RetryPolicy(base=0.05, factor=2.0, max_delay=0.4, jitter=0.5)

"""The rule for "pickups consistent with chance".

With P processes working one shared store, a task submitted by a process that also works is
run by one of the other P-1 with probability (P-1)/P if pickups were uniform. They are not
quite uniform (a submitter's own worker may be woken first), so the rule allows the
submitter to be SELF_BIAS times as likely as any other process: p = (P-1)/(P-1+SELF_BIAS).
Pickups also come in clumps (one claim takes up to `concurrency` tasks, usually from one
batch), so the independent trials are clumps, not tasks: n = ceil(own / concurrency).

The minimum is the binomial lower quantile of n trials at p with false-alarm probability
ALPHA, times the clump size, plus every completed task whose submitter never works (those
always cross). When that chance argument is strong enough to exclude zero, at least one
crossing is required. SELF_BIAS was calibrated on real runs (README, "What the harness
catches"); the threshold sits far below every share observed on correct stores."""

from __future__ import annotations

import math

ALPHA = 1e-9
SELF_BIAS = 2.0


def binomial_lower_quantile(n: int, p: float, alpha: float) -> int:
    """The largest k with P(X < k) <= alpha for X ~ Binomial(n, p)."""
    if n <= 0 or p <= 0:
        return 0
    if p >= 1:
        return n
    cdf, log_p, log_q = 0.0, math.log(p), math.log1p(-p)
    for k in range(n + 1):
        log_pmf = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
        cdf += math.exp(log_pmf + k * log_p + (n - k) * log_q)
        if cdf > alpha:
            return k
    return n


def cross_process_minimum(completed: int, own_worker: int, working: int, clump: int) -> int:
    """Fewest cross-process completions a shared store shows, except with probability ALPHA.
    `own_worker`: completed tasks whose submitter also works; `working`: processes working."""
    if working < 2 or completed == 0:
        return 0
    always = completed - own_worker
    p = (working - 1) / (working - 1 + SELF_BIAS)
    trials = math.ceil(own_worker / max(1, clump))
    bound = always + binomial_lower_quantile(trials, p, ALPHA) * max(1, clump)
    if bound == 0 and (1 - p) ** trials <= ALPHA:
        bound = 1
    return min(bound, completed)

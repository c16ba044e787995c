"""The two statistics an accuracy table needs, from SciPy: a 95 % confidence interval on an accuracy
(Wilson's score interval, sound for small n and for accuracies near 0 or 1) and McNemar's exact test of
two configurations answering the same questions (a two-sided binomial test on the questions where exactly
one of them was right)."""

from __future__ import annotations


def wilson_interval(correct: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """The accuracy's confidence interval; (0, 1) when there is nothing to estimate from."""
    if total == 0:
        return (0.0, 1.0)
    from scipy.stats import binomtest

    interval = binomtest(correct, total).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(interval.low), float(interval.high))


def mcnemar_exact(only_first: int, only_second: int) -> float:
    """p-value of "both configurations are equally accurate", from the discordant pairs only: questions
    that only the first got right and questions that only the second got right. 1.0 when there are none."""
    discordant = only_first + only_second
    if discordant == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(only_first, discordant, 0.5).pvalue)

"""Per-component GPU memory model (pure arithmetic; coefficients in rules/memory.yaml).

Stable API (the probe calls it): ``estimate(book, job, params) -> Estimate`` with ``total_gb``,
``reserved_gb`` and ``items``.
"""

from advisor.memory.estimate import Estimate, Item, Setup, estimate

__all__ = ["Estimate", "Item", "Setup", "estimate"]

"""Zero-cost proxies: rank untrained architectures from one or a few batches, in milliseconds.

``score(name, model, batches, graph)`` with ``name`` one of :data:`PROXIES` (synflow, naswot, grad_norm, snip, fisher,
jacov, zico, and the baselines params and macs); ``draw_batches(splits, ...)`` gives the seeded batches. Higher is
better for every proxy. The evaluator plugins (``nascore_plugins.zerocost``) make each a search evaluator.
"""

from nascore.zerocost.data import Batch, draw_batches
from nascore.zerocost.proxies import PROXIES, Proxy, score

__all__ = ["PROXIES", "Batch", "Proxy", "draw_batches", "score"]

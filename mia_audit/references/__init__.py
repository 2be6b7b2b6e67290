"""Reference models: plans (who trains on what), training, executors, the provider that caches
them and hands their logits to the attacks, and the check that they fit their plan.
"""

from __future__ import annotations

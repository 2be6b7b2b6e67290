"""The one-run audit of a DP training recipe (Steinke, Nasr and Jagielski 2023): canaries
(`canaries.py`), DP-SGD through opacus, an optional extra (`training.py`), and the audit that
trains one model on the population plus the included canaries, caches it and bounds epsilon
from its canary losses (`audit.py`). docs/dp-claim.md says what it checks.
"""

"""The run's sequence: the only code that reads a whole policy. `run.audit` goes from the
policy and its inputs to a `Result` (ARCHITECTURE.md, "The data path").
"""

from __future__ import annotations

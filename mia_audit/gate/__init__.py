"""The gate: its conditions (`spec`), their evaluation against attack metrics and suppressions
(`evaluate`), and the previous result baseline conditions compare with (`baseline`).
"""

from __future__ import annotations

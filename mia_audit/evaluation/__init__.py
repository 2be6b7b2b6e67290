"""From scores to figures: ROC, AUC and TPR at FPR (`metrics`), bootstrap CIs (`bootstrap`), the
empirical epsilon bound (`epsilon`), sample sizes (`sample_size`), and `evaluate_attack`, which
builds one attack's result.
"""

from __future__ import annotations

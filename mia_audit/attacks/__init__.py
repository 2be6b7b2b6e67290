"""The attacks: each maps the target's outputs (and reference models', for lira, rmia and
shadow) to one membership score per audit sample.
"""

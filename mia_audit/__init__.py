"""mia-audit: a membership-inference privacy gate for image classifiers."""

__version__ = "0.1.0"

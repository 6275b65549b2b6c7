"""Divergences between distributions: per-row KL/JS, elementwise terms, exact log-ratios."""

"""Xent: a REST scoring service for probabilistic classifiers."""

__version__ = "0.1.0"

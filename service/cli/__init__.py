"""Subcommands of the ``xent`` console script beyond ``serve`` and ``openapi``."""

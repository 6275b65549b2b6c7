"""What surrounds the routes: the one ASGI layer (exchange) and the pieces it applies.

``exchange`` is Xent's only middleware: request ids, auth, content codings, limits, timing,
metrics and the access log in one pass; ``dispatch`` sends scoring POSTs from it straight to
their endpoints. The other modules hold what it uses (``request_ids``, ``auth``, ``codings``,
``limits``, ``metrics``, ``access_log``) and what runs beside it (``drain``, ``loop_lag``).
"""

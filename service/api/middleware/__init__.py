"""ASGI layers around the routes: request ids, metrics, access log, limits, auth, drain, dispatch."""

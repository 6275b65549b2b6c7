"""Problem documents (RFC 9457) and the wording of option errors."""

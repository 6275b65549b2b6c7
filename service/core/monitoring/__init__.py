"""Monitors' mergeable statistics: the fine histogram, the versioned bytes, merging, series and drift."""

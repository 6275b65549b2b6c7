"""Monitors: ingestion of scored batches and late labels, and queries over time.

Between the HTTP layer and the store: :func:`ingest` turns a validated batch into statistics
rows, pending rows and reservoir rows written in one store transaction; :func:`fold_labels`
turns late labels into statistics of their predictions' buckets; :mod:`.query` merges stored
statistics into windows and time series. No FastAPI or Pydantic here.
"""

from service.monitors.batch_checks import MAX_FUTURE_S, bucket_starts, check_segment
from service.monitors.ingest import (
    TEMPERED,
    IngestCounts,
    PreparedBatch,
    ingest,
    prepare_batch,
    write_prepared,
    write_prepared_soon,
)
from service.monitors.late_labels import fold_labels, rows_distribution

__all__ = [
    "MAX_FUTURE_S",
    "TEMPERED",
    "IngestCounts",
    "PreparedBatch",
    "bucket_starts",
    "check_segment",
    "fold_labels",
    "ingest",
    "prepare_batch",
    "rows_distribution",
    "write_prepared",
    "write_prepared_soon",
]

"""Runtime configuration, read from ``XENT_*`` environment variables."""

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Runtime configuration, read from ``XENT_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="XENT_", frozen=True)

    host: str = Field(default="127.0.0.1", description="Interface to bind.")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port to bind.")
    workers: int = Field(default=1, ge=1, le=64, description="uvicorn worker processes.")
    max_body_bytes: int = Field(
        default=64 * 2**20, gt=0, description="Largest request body accepted (413 beyond)."
    )
    max_elements: int = Field(
        default=50_000_000, gt=0, description="Most array elements in one request (413 beyond)."
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = Field(default=True, description="One JSON line per request on stdout.")
    log_probes: bool = Field(
        default=False,
        description="Also log /healthz, /readyz and /metrics requests that succeed (left out by default: "
        "probes and scrapes every few seconds drown the scoring requests).",
    )
    api_keys: SecretStr | None = Field(
        default=None,
        description="API keys, comma-separated, or the path of a file with one key per line. "
        "Unset: no authentication. Set: every /v1 route needs `Authorization: Bearer <key>` or "
        "`X-API-Key: <key>`. An entry is `KEY[:SCOPES[:MONITORS]]`: SCOPES is `read`, `write`, "
        "`admin` joined by `+`, MONITORS monitor names joined by `+` (the key may use only those); "
        "a bare KEY has full access. Trailing `:` fields count only when they parse as such, so "
        "`a:b` is the key `a:b`. KEY may be `sha256:<hex digest of the key>`.",
    )
    protect_metrics: bool = Field(default=False, description="Require an API key for /metrics too.")
    cors_origins: str = Field(
        default="",
        description='Origins allowed by CORS, comma-separated ("*" for any). Empty: CORS off.',
    )
    request_timeout_s: float = Field(
        default=30.0, gt=0, description="Compute deadline of one request (503 + Retry-After beyond)."
    )
    max_concurrency: int = Field(
        default=64, ge=1, description="Scoring requests in flight per worker (503 + Retry-After beyond)."
    )
    scoring_threads: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Requests parsed and scored at once in threads per worker (bodies over 64 KiB, "
        "fits, bootstraps); more wait their turn within their deadline. Bounds the memory a burst "
        "of large requests takes: CPU-bound work gains nothing from more threads than cores.",
    )
    idle_trim_s: float = Field(
        default=1.0,
        ge=0,
        description="Once a worker has had no scoring request for this long, it gives the memory its "
        "allocator holds free back to the system (glibc malloc_trim); 0 turns this off.",
    )
    retry_after_s: int = Field(default=1, ge=0, description="Retry-After sent with every 503.")
    shutdown_grace_s: int = Field(
        default=30, ge=0, description="On SIGTERM, how long in-flight requests may run on."
    )
    drain_s: float = Field(
        default=1.0,
        ge=0,
        le=600,
        description="On SIGTERM, the least time a worker keeps answering 503 to new requests (and "
        "/readyz) before it closes its socket, even when nothing is in flight, so load balancers "
        "see it leave. Raise it to your readiness-probe period behind Kubernetes.",
    )
    data_dir: Path = Field(
        default=Path("data"),
        description="Directory of the embedded SQLite database of monitors (monitors.sqlite3, WAL), "
        "created on first start.",
    )
    database_url: str | None = Field(
        default=None,
        description="Where monitors live instead of data_dir: sqlite:///<path> (relative) or "
        "sqlite:////<absolute path>, or PostgreSQL: postgresql://user:password@host:5432/dbname "
        "(needs the postgres extra: pip install 'xent-service[postgres]'; several replicas may share it).",
    )
    max_monitors: int = Field(default=100, ge=1, le=100_000, description="Most monitors.")
    max_segments: int = Field(
        default=256, ge=1, le=100_000, description="Most segments one monitor may hold."
    )
    max_pending_rows: int = Field(
        default=100_000,
        ge=0,
        le=100_000_000,
        description="Most rows waiting for a late label, per monitor (their logits are kept until "
        "labelled or expired); a batch past it is refused.",
    )
    max_reservoir: int = Field(
        default=100_000,
        ge=0,
        le=10_000_000,
        description="Largest reservoir of labelled rows (kept for temperature refits) a monitor may ask for.",
    )
    idempotency_ttl_s: float = Field(
        default=86_400.0,
        gt=0,
        le=30 * 86_400,
        description="How long a monitor remembers an `Idempotency-Key` of observations, labels and "
        "events (a retry within it is answered like the first request and counts once).",
    )
    max_idempotency_keys: int = Field(
        default=100_000,
        ge=1,
        le=100_000_000,
        description="Most idempotency keys one monitor remembers; the background compaction "
        "forgets the oldest past it (and any older than idempotency_ttl_s).",
    )
    sqlite_synchronous: Literal["NORMAL", "FULL"] = Field(
        default="NORMAL",
        description="SQLite's synchronous mode for the monitor store (WAL): NORMAL, a 2xx survives "
        "the server process being killed (kill -9, OOM); FULL, it also survives an OS crash or "
        "power loss (an fsync per commit, shared by the writes committed together).",
    )
    compaction_interval_s: float = Field(
        default=60.0,
        gt=0,
        le=86_400,
        description="Seconds between background runs of retention and compaction of monitors' data.",
    )
    max_query_points: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="Most points one monitor time-series query may return (422 naming `step` beyond).",
    )
    monitor_cache_mb: float = Field(
        default=64.0,
        ge=0,
        le=1_048_576,
        description="MiB per worker of decoded monitor statistics kept between time-series queries "
        "(keyed by the stored bytes, so always exact); 0 turns the cache off.",
    )

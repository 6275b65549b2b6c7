"""Runtime configuration, read from ``XENT_*`` environment variables."""

from typing import Literal

from pydantic import Field
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

"""What a client may ask of a job: the validated options, their stored shape, the cache key.

The ``options`` column always has every field (``mapping`` included), so equal requests store
equal JSON and hash to equal cache keys; run_job turns it into the engine's ``SyncOptions``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

import beatsync

__all__ = ["JobOptions", "RenderRequest", "cache_key", "options_dict"]


class JobOptions(BaseModel):
    """What a client may ask of a job (``mapping`` is set only by the render route)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

    offset_s: float | None = Field(
        default=None, ge=-86_400, le=86_400, description="Reference time (s) heard at dance time 0."
    )
    nudge_ms: float = Field(
        default=0.0, ge=-5000, le=5000, description="Play the reference this much later (ms)."
    )
    start_s: float | None = Field(default=None, ge=0, description="Cut start in dance seconds.")
    end_s: float | None = Field(default=None, gt=0, description="Cut end in dance seconds.")
    trim: bool = Field(default=True, description="Trim to where the music plays.")
    reencode: bool = Field(default=False, description="Re-encode the picture as H.264.")
    max_height: int | None = Field(
        default=None, ge=144, le=4320, description="Largest picture height when re-encoding."
    )
    mix_live_db: float | None = Field(
        default=None,
        ge=-60,
        le=0,
        description="Mix the live room sound under the music at this gain.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> JobOptions:
        if self.start_s is not None and self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError(f"end_s ({self.end_s}) must be after start_s ({self.start_s})")
        if self.max_height is not None and not self.reencode:
            raise ValueError("max_height applies only with reencode: true")
        return self


class RenderRequest(BaseModel):
    """Another take of a finished job: a candidate, a nudge, another cut.

    A field left out keeps the job's value; ``start_s``/``end_s`` sent as null go back to the
    automatic cut.
    """

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

    candidate: int | None = Field(default=None, ge=0, description="Index into result.candidates.")
    nudge_ms: float | None = Field(default=None, ge=-5000, le=5000)
    start_s: float | None = Field(default=None, ge=0)
    end_s: float | None = Field(default=None, gt=0)
    trim: bool | None = None


def options_dict(options: JobOptions, mapping: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``options`` column: every field, ``mapping`` included, in one fixed shape."""
    return {**options.model_dump(), "mapping": mapping}


def cache_key(dance_sha256: str, bgm_sha256: str, options: dict[str, Any]) -> str:
    """Jobs with equal keys make the same files: same inputs, options and engine version."""
    canonical = json.dumps(options, sort_keys=True, separators=(",", ":"), allow_nan=False)
    text = "\n".join((dance_sha256, bgm_sha256, canonical, beatsync.__version__))
    return hashlib.sha256(text.encode()).hexdigest()

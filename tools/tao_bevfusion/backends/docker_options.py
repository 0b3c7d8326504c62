"""The docker backend's options, apart from the backend so the tool schema can publish them without
importing the Docker SDK."""

from typing import Any, Literal

from pydantic import Field

from tao_bevfusion.backends.base import BackendOptions
from tao_bevfusion.core.settings import Settings


class DockerOptions(BackendOptions):
    network: Literal["none", "host", "bridge"] = Field(
        default="none", description="Container network mode."
    )
    shm_size: str = Field(default="16G", pattern=r"^\d+[kKmMgG]?$", description="/dev/shm size.")
    mem_limit: str | None = Field(
        default=None, pattern=r"^\d+[kKmMgG]?$", description="Container memory limit."
    )
    memlock: int | None = Field(
        default=None,
        ge=-1,
        description=(
            "Container RLIMIT_MEMLOCK in bytes; default TAO_BEVFUSION_MEMLOCK or -1 = unlimited (NVIDIA's "
            "recommendation). Lower it only when the engine may not raise it."
        ),
    )

    @classmethod
    def from_user(cls, raw: dict[str, Any], settings: Settings) -> "DockerOptions":
        opts = cls.model_validate(raw)
        return (
            opts
            if opts.memlock is not None
            else opts.model_copy(update={"memlock": settings.memlock})
        )

"""Which container images a job may run. A job's image runs with the job's mounts (the dataset, results, the
user's uid), so a caller may not pick any image the engine happens to hold.

Trusted: the TAO 5.5 image (nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt), the operator's TAO_BEVFUSION_IMAGE,
and what the operator lists in TAO_BEVFUSION_TRUSTED_IMAGES (','-separated; 'repo/name:*' or 'repo/*' for a
family). A caller's `image` outside them is refused before anything is planned.
"""

import os

from tao_bevfusion.core.errors import InputError, problem
from tao_bevfusion.core.settings import DEFAULT_IMAGE, Settings

TRUSTED_ENV = "TAO_BEVFUSION_TRUSTED_IMAGES"


def trusted_images(settings: Settings) -> list[str]:
    listed = [e.strip() for e in os.environ.get(TRUSTED_ENV, "").split(",") if e.strip()]
    return list(dict.fromkeys([DEFAULT_IMAGE, settings.image, *listed]))


def _matches(image: str, entry: str) -> bool:
    return image == entry or (entry.endswith("*") and image.startswith(entry[:-1]))


def check_image(image: str | None, settings: Settings) -> str:
    """The image to run: the caller's when trusted, else the configured one."""
    if not image:
        return settings.image
    trusted = trusted_images(settings)
    if any(_matches(image, entry) for entry in trusted):
        return image
    raise InputError(
        problem(
            "image",
            f"{image[:200]} is not a trusted image (trusted: {', '.join(trusted)})",
            f"leave image out, or have the operator add it to {TRUSTED_ENV} (or set "
            "TAO_BEVFUSION_IMAGE) in the server's environment",
            code="IMAGE_NOT_TRUSTED",
        )
    )

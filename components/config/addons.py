"""`addons`: cluster add-on options."""

from __future__ import annotations

from typing import Optional

from pydantic import Field

from .fields import Settings


class AddonsConfig(Settings):
    # NVIDIA device plugin time-slicing: each GPU advertised this many times. GPUs are shared,
    # their memory is not isolated, and TGI cannot split it (config/stack.py): for GPU nodes
    # that serve no model of this stack.
    gpu_time_slicing_replicas: Optional[int] = Field(None, ge=2, le=48)

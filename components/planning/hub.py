"""The Hugging Face Hub client of `lock`: one model at one revision resolved into a lock entry
with huggingface_hub (model info with file metadata, the safetensors headers, config.json)."""

from __future__ import annotations

import json
import math
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from pydantic import ValidationError

from .lock import COMMIT, LockEntry, LockError, ModelShape, Quantization, field_errors

# safetensors dtype -> torch dtype name, for the floating types a checkpoint is served in.
_FLOAT_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32"}


#BODY

"""What the stack contract accepts that the layers below it do not own: the GPU instance types of
the planner's catalog, TGI's quantize modes (the planner's rules) and TGI's default image."""

from ..config import Vocabulary
from ..planning.catalog import CATALOG
from ..planning.planner import BITSANDBYTES, QUANTIZE
from .tgi import DEFAULT_IMAGE

VOCABULARY = Vocabulary(gpu_instance_types=tuple(CATALOG), quantize=QUANTIZE,
                        quantize_with_dtype=BITSANDBYTES, default_image=DEFAULT_IMAGE)

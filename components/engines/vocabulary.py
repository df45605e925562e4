"""What the stack contract accepts that the layers below it do not own: the GPU instance types of
the planner's catalog, and per engine (TGI first: the default) its quantize modes (the planner's
rules) and its default image."""

from ..config import EngineVocabulary, Vocabulary
from ..planning.catalog import CATALOG
from .registry import ENGINES

VOCABULARY = Vocabulary(
    gpu_instance_types=tuple(CATALOG),
    engines={name: EngineVocabulary(quantize=e.memory.quantize,
                                    quantize_with_dtype=e.memory.quantize_with_dtype,
                                    default_image=e.default_image, label=e.memory.label,
                                    stores=e.stores)
             for name, e in ENGINES.items()})

"""What layer-wise rates need from other libraries, one module each, registered in one registry.

* :mod:`.registry`: :func:`register_integration`, the one extension point (a library's trainer mixin, the
  arguments class its trainers take, what its optimizers need);
* :mod:`.sentence_transformers`: the trainer mixin for sentence-transformers' trainers, whose optimizer covers
  the loss module and whose own groups are taken over;
* :mod:`.trl`: the arguments class a TRL trainer takes (``SFTConfig``), so that layer-wise arguments of another
  class are copied into its composition;
* :mod:`.bitsandbytes`: 32-bit optimizer state for embeddings under 8-bit optimizers;
* :mod:`.deepspeed`: the DeepSpeed configs and options that would drop the layer-wise rates, refused (DeepSpeed
  is a switch of the stock ``TrainingArguments``, so the arguments and the trainer call these checks).

No module here imports its library at import time, nor anything of the package above the groups, so the core
works without them and the Trainer wiring can use them.
"""

from . import bitsandbytes, sentence_transformers, trl  # noqa: F401 - each registers its integration
from .registry import (
    Integration,
    integrations_for,
    prepare_for_optimizer,
    register_integration,
    unregister_integration,
)


__all__ = [
    "Integration",
    "integrations_for",
    "prepare_for_optimizer",
    "register_integration",
    "unregister_integration",
]

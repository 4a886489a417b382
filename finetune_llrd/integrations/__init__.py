"""What layer-wise rates need from other libraries, one module each.

* :mod:`.sentence_transformers`: the trainer mixin for sentence-transformers' trainers, whose optimizer covers
  the loss module and whose own groups are taken over;
* :mod:`.trl`: layer-wise arguments converted into the arguments class a trainer takes (TRL's ``SFTConfig``);
* :mod:`.deepspeed`: the DeepSpeed configs and options that would drop the layer-wise rates, refused;
* :mod:`.bitsandbytes`: 32-bit optimizer state for embeddings under 8-bit optimizers.

No module here imports its library at import time, so the core works without them.
"""

"""--gradient_checkpointing: keep only each layer's input for the backward pass and recompute the rest.

    from qa.activation_checkpointing import enable_activation_checkpointing
    how = enable_activation_checkpointing(model)   # before DDP wraps it; "transformers" or "albert layers"

The activations a layer saves for backward (attention probabilities, the feed-forward's wide hidden
states) are dropped after the forward pass and computed again during backward, one layer at a time:
training memory for activations falls from about all layers' worth to one layer's plus each layer's input,
for one more forward pass per step (benchmarks/bench_grad_ckpt.py measures both). The forward pass itself
is unchanged and dropout draws the same masks when recomputing (torch.utils.checkpoint restores the RNG
state), so the loss and the gradients are those of a run without it.

Models whose transformers class supports it (BERT, RoBERTa, ELECTRA, DeBERTa, ...) go through transformers'
own `activation_checkpointing_enable` (the new name of `gradient_checkpointing_enable`, deprecated in 5.x),
non-reentrant (`use_reentrant=False`: works with DDP and with inputs that need no gradient). ALBERT, the
guide's model, has no such support in transformers 5.24: its shared layer (AlbertLayer, called once per
depth) is checkpointed here the same way, with torch.utils.checkpoint around each call.
"""

import torch
from torch.utils.checkpoint import checkpoint

# transformers classes without activation checkpointing, and the layer class checkpointed here instead.
LAYER_CLASSES = {"albert": "AlbertLayer"}


def enable_activation_checkpointing(model):
    """Turn activation checkpointing on for training (evaluation, under no_grad, runs as before).

    Returns how ("transformers" or "<model_type> layers"); ValueError naming the class when neither applies."""
    model = getattr(model, "module", model)  # DDP
    if getattr(model, "supports_gradient_checkpointing", False):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        return "transformers"
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    layer_class = LAYER_CLASSES.get(model_type)
    layers = [m for m in model.modules() if type(m).__name__ == layer_class] if layer_class else []
    if not layers:
        raise ValueError(f"--gradient_checkpointing: {type(model).__name__} supports no activation checkpointing "
                         f"(neither in transformers nor here for {', '.join(LAYER_CLASSES)}); train without it, or "
                         "with a smaller --per_device_train_batch_size and more --gradient_accumulation_steps")
    for layer in layers:
        _checkpoint_calls(layer)
    return f"{model_type} layers"


def _checkpoint_calls(layer):
    """Every call of `layer` in training (gradients on) goes through torch.utils.checkpoint."""
    forward = layer.forward

    def checkpointed_forward(*args, **kwargs):
        if layer.training and torch.is_grad_enabled():
            return checkpoint(forward, *args, use_reentrant=False, **kwargs)
        return forward(*args, **kwargs)

    layer.forward = checkpointed_forward

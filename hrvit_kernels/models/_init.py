"""The releases' shared initialisation."""
from __future__ import annotations

from torch import nn


def init_transformer_weights(module: nn.Module) -> None:
    """Linear weights truncated normal (std 0.02) and biases 0; LayerNorm and BatchNorm weight 1, bias 0;
    convolutions keep PyTorch's default."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

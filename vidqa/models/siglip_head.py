"""The pretrained SigLIP pooling head that LLaVA-OneVision's checkpoints leave out, for FastVID's `ov` rule.

FastVID's reference re-attaches the original head of `google/siglip-so400m-patch14-384` (its post-layernorm
and multihead-attention pooling head: a learned probe query, attention, layernorm, MLP; 15.2 M parameters) to
the vision tower's last hidden state: the probe's attention over the patches ranks the tokens, and the head's
pooled output is the frame's global feature. The llava-hf checkpoints ship a 26-layer tower without it, so
vidqa loads those weights from the SigLIP repository on first use (hub cache, then offline reuse) and builds
the head with transformers' own `SiglipMultiheadAttentionPoolingHead`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch

from vidqa.errors import ModelLoadError

SIGLIP_REPO = "google/siglip-so400m-patch14-384"
WEIGHTS_FILE = "model.safetensors"
_PREFIXES = ("vision_model.head.", "vision_model.post_layernorm.")


class SiglipHead(torch.nn.Module):
    """post_layernorm + the attention pooling head, with the probe's attention exposed."""

    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float) -> None:
        super().__init__()
        from transformers import SiglipVisionConfig
        from transformers.models.siglip.modeling_siglip import SiglipMultiheadAttentionPoolingHead

        config = SiglipVisionConfig(
            hidden_size=hidden, num_attention_heads=heads, intermediate_size=intermediate, layer_norm_eps=eps
        )
        self.post_layernorm = torch.nn.LayerNorm(hidden, eps=eps)
        self.head = SiglipMultiheadAttentionPoolingHead(config)

    @torch.inference_mode()
    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden (T, P, D) last hidden states → (attention of the probe over the P patches, averaged over
        heads (T, P); the pooled feature (T, D))."""
        normed = self.post_layernorm(hidden)
        probe = self.head.probe.repeat(normed.shape[0], 1, 1)
        _, weights = self.head.attention(probe, normed, normed, need_weights=True, average_attn_weights=True)
        return weights[:, 0].float(), self.head(normed).float()


@lru_cache(maxsize=2)
def load_siglip_head(hidden: int, heads: int, eps: float, device: str, dtype: str,
                     repo: str = SIGLIP_REPO) -> SiglipHead:  # fmt: skip
    """The head for a tower of width `hidden`, downloaded once (a clear error offline or on a mismatch)."""
    state = _head_weights(repo)
    width = state["vision_model.head.probe"].shape[-1]
    if width != hidden:
        raise ModelLoadError(
            f"FastVID's SigLIP head ({repo}) is {width}-d but this model's vision tower is {hidden}-d; "
            "use -p siglip_head=false for the head-free rule"
        )
    intermediate = state["vision_model.head.mlp.fc1.weight"].shape[0]
    module = SiglipHead(hidden, heads, intermediate, eps)
    module.load_state_dict({name.removeprefix("vision_model."): value for name, value in state.items()})
    return module.to(device=torch.device(device), dtype=getattr(torch, dtype)).eval()


def _head_weights(repo: str) -> dict[str, Any]:
    from huggingface_hub import hf_hub_download
    from safetensors import safe_open

    try:
        path = hf_hub_download(repo, WEIGHTS_FILE)
    except Exception as exc:  # offline, gated, no network: say what and how to go on
        raise ModelLoadError(
            f"FastVID's LLaVA-OneVision rule needs the SigLIP pooling head from {repo} "
            f"({type(exc).__name__}: cannot download it); use -p siglip_head=false for the head-free rule"
        ) from None
    with safe_open(path, framework="pt") as weights:
        names = [name for name in weights.keys() if name.startswith(_PREFIXES)]  # noqa: SIM118
        if not names:
            raise ModelLoadError(f"{repo}: {WEIGHTS_FILE} holds no SigLIP pooling head")
        return {name: weights.get_tensor(name) for name in names}

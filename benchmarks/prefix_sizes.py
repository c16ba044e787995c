"""How big a video prefix is on disk: the LLM's cache after the prompt up to the video's last kept token.

For each real-shape model (`real_shapes.py`): the prefix's length at 32 frames of a 640×360 clip, from the
model's real processor (text before the video, per-frame text such as timestamps, visual tokens), with
every visual token kept (keep 1) and a quarter of them (keep 0.25); and the bytes its cache holds, from the
published config:

    full-attention layer      2 × KV heads × head dim × tokens × bytes per value
    sliding-window layer      the same for at most (window − 1) tokens
    linear-attention layer    a fixed state: conv (2·K·dk + V·dv) × kernel values, and a recurrent state of
                              V × dk × dv values kept in float32 whatever the model's dtype

`entry_bytes` is checked against real entries of the tiny test models (tests/test_prefix.py). Gemma 4 is
left out: its KV-shared layers and per-layer head sizes need the model's own cache to count.

    python -m benchmarks.prefix_sizes
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from benchmarks.real_shapes import recipe

MODELS = ("llava-ov-0.5b", "llava-ov-7b", "qwen2.5-vl-7b", "qwen3-vl-8b", "qwen3.5-2b", "qwen3.5-9b")


def entry_bytes(text_config: Any, tokens: int, bytes_per_value: int = 2) -> int:
    """Bytes of the cache tensors a prefix entry stores for `tokens` kept prefix tokens."""
    layers = int(text_config.num_hidden_layers)
    types = list(getattr(text_config, "layer_types", None) or ["full_attention"] * layers)
    heads = int(text_config.num_attention_heads)
    head_dim = int(getattr(text_config, "head_dim", None) or text_config.hidden_size // heads)
    kv = int(getattr(text_config, "num_key_value_heads", None) or heads)
    window = getattr(text_config, "sliding_window", None)
    values = float32_values = 0
    for kind in types:
        if kind == "linear_attention":
            k_heads, v_heads = int(text_config.linear_num_key_heads), int(text_config.linear_num_value_heads)
            k_dim, v_dim = int(text_config.linear_key_head_dim), int(text_config.linear_value_head_dim)
            values += (2 * k_heads * k_dim + v_heads * v_dim) * int(text_config.linear_conv_kernel_dim)
            float32_values += v_heads * k_dim * v_dim
        elif kind == "sliding_attention" and window:
            values += 2 * kv * head_dim * min(tokens, int(window) - 1)
        else:
            values += 2 * kv * head_dim * tokens
    return values * bytes_per_value + float32_values * 4


def prefix_tokens(name: str, frames: int = 32, keep: float = 1.0) -> int:
    """The prefix length at `keep`: the text up to the last video token, with round(keep · V) of the V visual
    tokens, from the model's real processor on a `frames`-frame 640×360 clip."""
    rec = recipe(name)
    tokenizer = rec.tokenizer()
    processor = rec.processor(tokenizer)
    config = rec.config()
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    video = np.zeros((frames, 360, 640, 3), dtype=np.uint8)
    extra = {"cap_pixels_per_frame": True} if hasattr(processor.video_processor, "max_video_tokens") else {}
    batch = processor(text=[text], videos=[video], do_sample_frames=False, return_tensors="pt", **extra)
    ids = batch["input_ids"][0]
    video_id = getattr(config, "video_token_id", None)
    if video_id is None:
        video_id = config.video_token_index
    positions = (ids == int(video_id)).nonzero(as_tuple=True)[0]
    visual = int(positions.numel())
    return int(positions[-1]) + 1 - visual + round(keep * visual)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args(argv)
    print(f"{args.frames} frames of a 640×360 clip, bfloat16 cache")
    print("| model | per token | keep 0.25: tokens | size | keep 1: tokens | size |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in args.models.split(","):
        text = recipe(name).config().get_text_config()
        fixed = entry_bytes(text, 0)
        per_token = entry_bytes(text, 1) - fixed
        cells = []
        for keep in (0.25, 1.0):
            tokens = prefix_tokens(name, args.frames, keep)
            cells += [f"{tokens:,}", f"{entry_bytes(text, tokens) / 2**20:.1f} MiB"]
        fixed_note = f" + {fixed / 2**20:.1f} MiB" if fixed else ""
        print(f"| {name} | {per_token / 1024:.0f} KiB{fixed_note} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

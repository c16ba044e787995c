"""Write examples/clip.mp4, the small clip the README and quick checks use (deterministic, ~7 s, <400 KB).

A red ball crosses a blue sky for 3.5 s, then the scene cuts to a yellow square moving over a green field:
visible motion and one scene change, so a real VideoLLM has something to describe and a compressor has
redundant frames to drop. Re-run to regenerate: `python examples/make_example.py [output]`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from vidqa import synth

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "clip.mp4"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    output = Path(args[0]) if args else DEFAULT_OUTPUT
    synth.make_clip(
        output, seconds=7.0, fps=25, size=(480, 270), pattern="cuts", cut_every=3.5, gop=50, crf=26,
        preset="medium",
    )  # fmt: skip
    print(f"wrote {output} ({output.stat().st_size / 1000:.0f} KB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

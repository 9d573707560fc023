"""wmbench adapter for synthguard's watermark (used by bench/bench_watermark.py).

    python ../shared/bench/wm/wmbench.py --adapter /work/main/bench/wm_adapter.py:ADAPTER ...
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


class SynthguardAdapter:
    name = "synthguard"
    payload_bits = 64
    bench_caps = {"512": 40, "1024": 10, "ns": 2}

    def setup(self):
        import watermark  # noqa: F401  (fail early: marks the adapter unavailable)

    def info(self):
        from watermark import codec, image

        return {"library": "synthguard watermark", "settings":
                f"periodic keyed tile, {image.CELLS}x{image.CELLS} cells, {image.PERIODS:g} periods/short side, "
                f"64 bits + {codec.CHECK_BITS}-bit keyed MAC, rate-1/{codec.RATE} K={codec.K} convolutional code, "
                f"soft Viterbi, public key",
                "false_positive_probability": image.false_positive_probability()}

    def embed(self, rgb, bits):
        import watermark

        payload = np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes()
        return watermark.embed(rgb, payload)

    def decode(self, rgb):
        import watermark

        det = watermark.detect(rgb)
        if not det.detected:
            return None
        return [int(b) for b in np.unpackbits(np.frombuffer(det.payload, dtype=np.uint8))]


ADAPTER = SynthguardAdapter()

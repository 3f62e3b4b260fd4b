"""Published and previously measured figures our results are set beside (never used to compute ours).

``ATTENTION_CORE``: H100 80GB, torch 2.11.0+cu130, forward+backward of the attention core, B=32, H=4,
bf16, median of 10 with CUDA events; (ms, peak MiB above the inputs); None = out of memory. Source:
the project's ``shared/README.md``, "Facts measured on the GPU machine".

``LRA_TABLE2``: Tay et al., "Long Range Arena", ICLR 2021, Table 2: byte-level Text at 1K-4K, batch 32,
4x4 TPU v3; steps/s and peak memory (GB per device). Source: ``shared/reference/published.md`` §1.2.
"""

from __future__ import annotations

REFERENCE_SETUP = {"level": "core", "mode": "fwd_bwd", "dtype": "bf16", "batch": 32, "heads": 4}

ATTENTION_CORE: dict[str, dict[tuple[int, int], tuple[float, float] | None]] = {
    "PyTorch SDPA": {
        (32, 1024): (0.75, 81), (32, 4096): (4.42, 324), (32, 16384): (70.8, 1296),
        (64, 1024): (0.61, 161), (64, 4096): (4.70, 644), (64, 16384): (81.6, 2576),
    },
    "TaylorShift authors' efficient": {
        (32, 1024): (13.2, 1491), (32, 4096): (50.5, 5938), (32, 16384): (204.4, 23728),
        (64, 1024): (46.6, 5588), (64, 4096): (184.8, 22155), (64, 16384): None,
    },
    "TaylorShift authors' direct": {
        (32, 1024): (18.9, 3.9 * 1024), (32, 4096): (276.0, 60 * 1024), (32, 16384): None,
    },
}

# model name in LRA Table 2 -> (our backend, {length: (steps/s, peak GB)})
LRA_TABLE2: dict[str, tuple[str, dict[int, tuple[float, float]]]] = {
    "Transformer": ("softmax", {1024: (8.1, 0.85), 2048: (4.9, 2.65), 3072: (2.3, 5.51), 4096: (1.4, 9.48)}),
    "Local Attention": ("local",
                        {1024: (9.2, 0.42), 2048: (8.4, 0.76), 3072: (7.4, 1.06), 4096: (7.4, 1.37)}),
    "Linformer": ("linformer", {1024: (9.3, 0.37), 2048: (9.1, 0.55), 3072: (8.5, 0.99), 4096: (7.7, 0.99)}),
    "Linear Trans.": ("linear", {1024: (9.1, 0.37), 2048: (9.3, 0.57), 3072: (8.6, 0.80), 4096: (7.8, 1.03)}),
    "Performer": ("performer", {1024: (9.5, 0.37), 2048: (9.4, 0.59), 3072: (8.7, 0.82), 4096: (8.0, 1.06)}),
}

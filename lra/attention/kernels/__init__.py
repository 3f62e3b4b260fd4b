"""Fused GPU kernels for attention backends whose PyTorch form materialises large intermediates.

``fused_taylorshift`` (Triton) computes non-causal efficient TaylorShift attention without writing the
N x d^2 features to device memory. ``TRITON_AVAILABLE`` says whether Triton could be imported; without
CUDA the kernels run in Triton's interpreter on CPU tensors (slow: for tests only).
"""

from lra.attention.kernels.taylorshift import TRITON_AVAILABLE, KernelConfig, default_config, fused_taylorshift

__all__ = ["TRITON_AVAILABLE", "KernelConfig", "default_config", "fused_taylorshift"]

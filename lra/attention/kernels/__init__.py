"""Fused GPU kernels for attention backends whose PyTorch form materialises large intermediates.

``fused_taylorshift`` (Triton) computes non-causal efficient TaylorShift attention without writing the
N x d^2 features to device memory; ``fused_direct_taylorshift`` computes the direct (quadratic) form in
FlashAttention's tiles, from the raw q, k, v. ``TRITON_AVAILABLE`` says whether Triton could be imported;
without CUDA the kernels run in Triton's interpreter on CPU tensors (slow: for tests only). Eager calls go through
an autograd.Function (the least host time per call); under torch.compile the same launches run as custom ops
(``lra::taylorshift_direct``, ``lra::taylorshift_efficient`` and their ``_backward``), which stay whole in the
compiled graph, so that CUDA graphs (``model.compile=reduce-overhead``) capture them with the rest of the step.
"""

from lra.attention.kernels.runtime import SUPPORTED_DTYPES, TRITON_AVAILABLE
from lra.attention.kernels.taylorshift import KernelConfig, default_config, fused_taylorshift
from lra.attention.kernels.taylorshift_direct import DirectConfig, direct_config, fused_direct_taylorshift

__all__ = ["SUPPORTED_DTYPES", "TRITON_AVAILABLE", "DirectConfig", "KernelConfig", "default_config", "direct_config",
           "fused_direct_taylorshift", "fused_taylorshift"]

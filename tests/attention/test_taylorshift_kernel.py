"""The fused TaylorShift kernels against a float64 direct (quadratic) form of the same attention.

Without CUDA the kernels run in Triton's interpreter on CPU tensors: tiny sizes, float32, tilings chosen so
that several row tiles, a partial last tile, several block pairs and the split (atomic) summary all occur.
The GPU tests run the compiled kernels at the sizes and precisions the backend is used with.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from lra.attention.kernels import runtime
from lra.attention.kernels import taylorshift as ts  # imported before triton: it picks the interpreter
from tests.attention.cases import eager_and_compiled

if not ts.TRITON_AVAILABLE:
    pytest.skip("needs triton", allow_module_level=True)

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
interpreter = pytest.mark.skipif(
    torch.cuda.is_available() or not runtime.interpreter_ready(),
    reason="CPU runs need Triton's interpreter, chosen before triton is first imported (TRITON_INTERPRET=1)",
)


def direct_taylorshift(q, k, v, mask, a=0.5, b=1.0, c=1.0):
    """out_i = sum_j w_ij v_j / sum_j w_ij, w_ij = a s^2 + b s + c, s = q_i . k_j, padded keys dropped."""
    s = q.double() @ k.double().transpose(-1, -2)
    w = a * s * s + b * s + c
    if mask is not None:
        w = w.masked_fill(mask[:, None, None, :], 0.0)
    return (w @ v.double()) / w.sum(-1, keepdim=True)


def make_inputs(batch, heads, n, d, d_v, dtype, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(batch, heads, n, d, generator=gen), dim=-1) * 1.5  # temperature folded in
    k = F.normalize(torch.randn(batch, heads, n, d, generator=gen), dim=-1)
    v = torch.randn(batch, heads, n, d_v, generator=gen)
    dout = torch.randn(batch, heads, n, d_v, generator=gen)
    return [t.to(device=device, dtype=dtype) for t in (q, k, v, dout)]


def padding_mask(batch, n, device):
    mask = torch.zeros(batch, n, dtype=torch.bool, device=device)
    mask[-1, n - n // 3 :] = True
    return mask


def relative_errors(q, k, v, dout, mask, config=None, coefficients=(0.5, 1.0, 1.0)) -> dict[str, float]:
    """Relative errors of the output and of the gradients of q, k, v; also checks padded keys get none."""
    inputs = [t.clone().requires_grad_() for t in (q, k, v)]
    out = ts.fused_taylorshift(*inputs, mask, *coefficients, config=config)
    out.backward(dout)
    reference_inputs = [t.detach().double().requires_grad_() for t in (q, k, v)]
    reference = direct_taylorshift(*reference_inputs, mask, *coefficients)
    reference.backward(dout.double())
    assert out.dtype == v.dtype and out.shape == v.shape
    errors = {"out": out.double().sub(reference).norm().item() / reference.norm().item()}
    for name, x, r in zip(("dq", "dk", "dv"), inputs, reference_inputs, strict=True):
        assert torch.isfinite(x.grad).all(), name
        errors[name] = x.grad.double().sub(r.grad).norm().item() / r.grad.norm().item()
    if mask is not None:
        for grad in (inputs[1].grad, inputs[2].grad):  # k and v (of its own width)
            assert grad[mask[:, None, :, None].expand_as(grad)].abs().max() == 0
    return errors


def tiny(d: int, **changes) -> ts.KernelConfig:
    """The default tiling with 16-row tiles and blocks that keep the interpreter quick at d."""
    quick = {"rows": 16, "summary_rows": 16, "summary_steps": 2}
    if d >= 64:
        quick |= {"block_m": 4, "query_grad_block": 8, "key_grad_block": 8, "summary_block_m": 32,
                  "summary_block_n": 32}
    return dataclasses.replace(ts.default_config(d), **(quick | changes))


@interpreter
@pytest.mark.parametrize("d", [16, 32, 64])
def test_matches_direct_form_with_padding_under_interpreter(d):
    q, k, v, dout = make_inputs(2, 1, 37, d, d, torch.float32, "cpu")
    errors = relative_errors(q, k, v, dout, padding_mask(2, 37, "cpu"), tiny(d))
    assert max(errors.values()) < 1e-4, errors


@interpreter
def test_split_summary_without_mask_and_other_coefficients_under_interpreter():
    q, k, v, dout = make_inputs(1, 2, 45, 16, 16, torch.float32, "cpu", seed=1)
    config = tiny(16, split_rows=16, summary_block_m=8, summary_block_n=8)  # three programs add into S2
    errors = relative_errors(q, k, v, dout, None, config, coefficients=(1.0, 0.5, 2.0))
    assert max(errors.values()) < 1e-4, errors


@interpreter
def test_dense_summary_and_padded_widths_under_interpreter():
    # d = 20 and d_v = 12 are zero-padded to 32 and 16 inside; the dense (non-mirrored) summary
    q, k, v, dout = make_inputs(2, 1, 23, 20, 12, torch.float32, "cpu", seed=2)
    config = tiny(32, summary_block_m=4, summary_block_n=32, summary_symmetric=False)
    errors = relative_errors(q, k, v, dout, padding_mask(2, 23, "cpu"), config)
    assert max(errors.values()) < 1e-4, errors


@interpreter
def test_half_precision_under_interpreter():
    q, k, v, dout = make_inputs(1, 1, 40, 16, 16, torch.float16, "cpu", seed=3)
    errors = relative_errors(q, k, v, dout, padding_mask(1, 40, "cpu"), tiny(16))
    assert max(errors.values()) < 1e-2, errors


@interpreter
def test_the_compiled_call_keeps_the_kernels_in_one_graph_and_matches_eager_under_interpreter():
    """Under torch.compile the kernels run as the custom ops: the same outputs and gradients, bit for bit."""
    q, k, v, dout = make_inputs(2, 1, 37, 16, 16, torch.float32, "cpu", seed=4)
    mask = padding_mask(2, 37, "cpu")

    def call(*inputs):
        return ts.fused_taylorshift(*inputs, mask, config=tiny(16, split_rows=16))

    for eager, compiled in zip(*eager_and_compiled(call, [q, k, v], dout), strict=True):
        assert torch.equal(eager, compiled)


@interpreter
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_the_custom_ops_pass_torchs_own_checks_under_interpreter(dtype):
    """Schema, fake (meta) outputs of the same shapes, strides and dtypes (S2 in half precision beside half
    inputs), autograd registration, AOT dispatch."""
    q, k, v, dout = (t.reshape(2, 20, 16) for t in make_inputs(2, 1, 20, 16, 16, dtype, "cpu", seed=5))
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    mask = padding_mask(2, 20, "cpu").to(torch.uint8)
    fields = runtime.config_fields(tiny(16))
    forward = (q, k, v, mask, 1, 0.5, 1.0, 1.0, fields)
    torch.library.opcheck(torch.ops.lra.taylorshift_efficient, forward)
    out, den, s2, low = torch.ops.lra.taylorshift_efficient(*forward)
    backward = (*(t.detach() for t in (q, k, v)), mask, out.detach(), den, s2, low, dout, 1, 0.5, 1.0, 1.0,
                fields)  # no double backward
    torch.library.opcheck(torch.ops.lra.taylorshift_efficient_backward, backward)


@pytest.mark.parametrize(
    ("shapes", "dtypes", "mask_shape", "message"),
    [
        (((1, 2, 8, 16), (1, 2, 9, 16), (1, 2, 8, 16)), None, None, "one shape"),
        (((1, 2, 8, 16),) * 3, (torch.float32, torch.float32, torch.float64), None, "one dtype"),
        (((1, 2, 8, 16),) * 3, None, (2, 8), "key_padding_mask"),
    ],
)
def test_bad_inputs_get_a_clear_error(shapes, dtypes, mask_shape, message):
    dtypes = dtypes or (torch.float32,) * 3
    q, k, v = (torch.zeros(s, dtype=t) for s, t in zip(shapes, dtypes, strict=True))
    mask = None if mask_shape is None else torch.zeros(mask_shape, dtype=torch.bool)
    with pytest.raises(ValueError, match=message):
        ts.fused_taylorshift(q, k, v, mask)


def test_bad_tiling_gets_a_clear_error():
    with pytest.raises(ValueError, match="summary_symmetric needs square blocks"):
        dataclasses.replace(ts.default_config(32), summary_block_m=8).check(32, 32)
    with pytest.raises(ValueError, match="block_m=3 must be a power of two"):
        dataclasses.replace(ts.default_config(32), block_m=3).check(32, 32)


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("d", [16, 32, 64])
@pytest.mark.parametrize(("dtype", "limit"), [(torch.bfloat16, 1e-2), (torch.float32, 1e-4)])
@pytest.mark.parametrize("n", [1000, 4133])
def test_matches_direct_form_on_gpu(d, dtype, limit, n):
    q, k, v, dout = make_inputs(2, 3, n, d, d, dtype, "cuda", seed=n + d)
    mask = padding_mask(2, n, "cuda")
    for _ in range(2):  # the first call compiles and launches through Triton, the second directly
        junk = torch.full((2**26,), float("nan"), device="cuda")  # unwritten outputs would read as NaN
        del junk
        errors = relative_errors(q, k, v, dout, mask)
        assert max(errors.values()) < limit, errors

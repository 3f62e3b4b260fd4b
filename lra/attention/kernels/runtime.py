"""Triton for the fused kernels: its import (the interpreter on CPU-only machines) and a low-overhead launch.

Every kernel module imports ``triton`` and ``tl`` from here, so that the interpreter is chosen before Triton is
first imported, whichever kernel module a caller imports first.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TypeVar

import torch

if not torch.cuda.is_available():
    # Without CUDA, Triton runs kernels only in its interpreter (on CPU tensors: the tests), and that
    # must be chosen before triton is first imported; an explicit TRITON_INTERPRET=0 is respected.
    os.environ.setdefault("TRITON_INTERPRET", "1")

try:
    import triton
    import triton.language as tl
except ImportError:  # the CPU-only install has no Triton; callers check TRITON_AVAILABLE
    triton = None
    tl = None

TRITON_AVAILABLE = triton is not None
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
FAST_LAUNCH = True  # switch for measuring what the direct launch saves
_compiled: dict[tuple, object] = {}


def interpreter_ready() -> bool:
    """Whether Triton's own library runs interpreted, as kernels on CPU tensors need."""
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(tl.zeros, InterpretedFunction)


def _let_interpreter_index_with_numpy_2_4() -> None:
    # Triton 3.6's interpreter turns loop bounds into ints with int() on one-element arrays, which
    # NumPy >= 2.4 refuses; take the element instead. Interpreter only: compiled kernels never see this.
    from triton.runtime import interpreter

    original = interpreter._patch_lang_tensor
    if getattr(original, "takes_one_element_arrays", False):
        return

    def patch_lang_tensor(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    patch_lang_tensor.takes_one_element_arrays = True
    interpreter._patch_lang_tensor = patch_lang_tensor


if TRITON_AVAILABLE and interpreter_ready():
    _let_interpreter_index_with_numpy_2_4()


def tile_width(width: int) -> int:
    """The tile size of a ``width``-wide axis: a power of two of at least 16, as the tensor cores need (the extra
    columns are zeros, which add nothing)."""
    return max(16, 1 << (width - 1).bit_length())


def float32_precision(dtype: torch.dtype) -> str:
    """How float32 products run: exactly for float32 inputs; in tf32 (10-bit mantissa) beside half-precision
    inputs, where the products that matter run in the inputs' own precision."""
    return "ieee" if dtype == torch.float32 else "tf32"


Config = TypeVar("Config")


def config_fields(config: object) -> list[int]:
    """A kernel tiling (a dataclass of ints, bools and optional ints) as the int list a custom op's schema takes;
    an absent value as -1, which no tile size, warp count or row count can be."""
    return [-1 if value is None else int(value) for value in dataclasses.astuple(config)]


def config_from_fields(cls: type[Config], values: list[int]) -> Config:
    """The tiling ``config_fields`` wrote."""
    fields = dataclasses.fields(cls)
    return cls(**{field.name: None if value == -1 else bool(value) if isinstance(field.default, bool) else value
                  for field, value in zip(fields, values, strict=True)})


def tiles(n: int, size: int) -> int:
    """How many tiles of ``size`` cover ``n``: ``triton.cdiv``, whose call from Python goes through Triton's JIT
    dispatch (about 10 us a call on the host, where a launch has a few to spare)."""
    return -(-n // size)


def _specialisation(value: object) -> object:
    """What Triton specialises a kernel on for one argument: dtype and 16-byte alignment of a tensor, whether an
    integer is 1 or a multiple of 16 (strides are)."""
    if isinstance(value, torch.Tensor):
        return value.dtype, value.data_ptr() % 16 == 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value == 1, value % 16 == 0
    return None


try:  # the handle of the current stream without building a Stream object, as Triton's own launch gets it
    from torch._C import _cuda_getCurrentRawStream as _current_stream
except ImportError:  # a build without CUDA: launch never takes the compiled path there
    def _current_stream(index: int) -> int:
        return torch.cuda.current_stream(index).cuda_stream


def launch(kernel, grid: tuple[int, ...], args: tuple, constants: dict, warps: int, stages: int) -> None:
    """Launch ``kernel`` through its compiled handle once one exists for these compile-time constants and
    argument specialisations. Triton's own launch re-derives the specialisation of every argument on every
    call, which at N = 1-2k costs more host time than the kernels take on the GPU."""
    tensors = [x for x in args if isinstance(x, torch.Tensor)]
    if not FAST_LAUNCH or tensors[0].device.type != "cuda":
        kernel[grid](*args, **constants, num_warps=warps, num_stages=stages)
        return
    key = (kernel, *constants.items(), warps, stages, tensors[0].device, *map(_specialisation, args))
    compiled = _compiled.get(key)
    if compiled is None:
        _compiled[key] = kernel[grid](*args, **constants, num_warps=warps, num_stages=stages)
        return
    named = {**dict(zip(kernel.arg_names, args, strict=False)), **constants}  # run-time arguments come first
    values = tuple(named[name] for name in kernel.arg_names)
    stream = _current_stream(tensors[0].device.index)
    hooks = triton.knobs.runtime
    compiled.run(*grid, *(1,) * (3 - len(grid)), stream, compiled.function, compiled.packed_metadata,
                 compiled.launch_metadata(grid, stream, *values), hooks.launch_enter_hook, hooks.launch_exit_hook,
                 *values)

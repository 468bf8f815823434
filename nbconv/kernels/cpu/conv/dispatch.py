"""2-D convolution (cross-correlation) kernels for the CPU: the public kernels, which run what plan.py picks.

Shapes: input (N, C, H, W), weight (D, C // groups, KH, KW), bias (D,) or (0,) for none,
output (N, D, OH, OW). Every kernel overwrites its outputs completely, so callers may pass
uninitialised buffers.

Algorithms, each in its own module with the same surface (applies, buffers, forward, backward_input,
backward_weight), chosen per pass by plan.py (the rules and their measurements are documented there):
- winograd.py: 3x3 stride-1 layers with enough channels and width, Winograd's F(2x2, 3x3) (2.25x less
  arithmetic), forward and input gradient, winograd4.py by F(4x4, 3x3) for the larger of them;
  winograd4_weight.py: the same layers' weight gradient by F(4x4, 3x3) (winograd_weight.py: by F(2x2, 3x3));
- shift.py: stride 1 with 16 or more channels per group: one matrix product per window tap over shifted
  views of the padded image, nothing unrolled; also the input gradients Winograd leaves and the weight
  gradients of layers with at most SHIFT_WEIGHT_CHANNELS channels;
- wide.py: other stride-1 layers and weight gradients, im2col over whole padded rows, then matrix products;
- gemm.py: any stride, im2col over output rows, then matrix products; used for strides above 1 and
  ("pointwise") for 1x1 convolutions, which need no unrolling;
- depthwise.py: depthwise 3x3 stride-1 layers, every tap unrolled;
- direct.py: loop nests for other depthwise convolutions, where a product per group would be tiny.
rows.py holds the row and padding helpers the stride-1 algorithms share, blocks.py the cache and chunk
sizes. The products call numpy's BLAS single-threaded from inside the parallel kernels (see blas.py).

Non-finite values follow the definition (README, "Guarantees"): the output and the weight gradient are sums
of products with the explicitly zero-padded input (an inf weight meets the padding: NaN), the input gradient
a sum over the (output, tap) pairs that cover each pixel. The fast algorithms compute extra products (the
Wp - OW columns of wide/shift, Winograd's tile transforms, direct's skipped padding) that
only matter when a value is not finite; so each public kernel checks its result (and the array that
multiplies padding or extra zeros) in one pass, and when anything is not finite recomputes by the
definition with direct.py's loop nests over an explicitly padded input. Finite data never takes that path.
The algorithms of EXACT_PRODUCTS compute the definition's products and no others, so their results need no
check: only their weight is checked (a few thousand values, against a pass over the whole result); so do the
passes of EXACT_PASSES (exact_pass says which).
"""
import numpy as np
from numba import njit

from . import packed, packed_windows, pointwise_tiles, winograd, winograd4
from .... import checks
from ..arguments import check_read, check_written, contiguous
from ..fastmath import REDUCE
from ..finite import all_finite
from ..scale_shift import scale_shift_forward
from ..shared import chunk_bounds, flat_view
from ..threads import parallel_parts, thread_count
from ..workspace import scratch
from .direct import conv2d_backward_input_direct, conv2d_backward_weight_direct, conv2d_forward_direct
from .plan import plan, prepared_plan


@njit(nogil=True, cache=True, error_model="numpy", fastmath=REDUCE, no_cfunc_wrapper=True)
def conv2d_backward_bias_span(span_part, span_parts, planes, grad_bias):
    """conv2d_backward_bias over the span_part-th of span_parts slices of its outer loop (threads.py). planes:
    grad_output as (N, D, OH*OW) (one flat loop a plane vectorizes; (oh, ow) loops did not)."""
    N, D = planes.shape[0], planes.shape[1]
    span_first, span_last = chunk_bounds(span_part, span_parts, D)
    for d in range(span_first, span_last):
        total = grad_bias.dtype.type(0)
        for n in range(N):
            plane = planes[n, d]
            for q in range(plane.shape[0]):
                total += plane[q]
        grad_bias[d] = total


def conv2d_backward_bias(grad_output, grad_bias):
    """grad_bias (D,) = grad_output (N, D, OH, OW) summed over N, OH, OW (each channel by one thread: the same
    bits at any thread count). Below MIN_PARALLEL_WORK values on the calling thread alone: LeNet-5's second
    layer's 102,400 take ~21 us there, and a hand-off more than the half it would save."""
    checks.ndim("grad_output", grad_output, (4,), "(N, D, OH, OW)")
    N, D, OH, OW = grad_output.shape
    check_read(grad_output.dtype)
    check_written("grad_bias", grad_bias, (D,), grad_output.dtype)
    planes = flat_view(np.ascontiguousarray(grad_output), (N, D, OH * OW))
    parallel_parts(conv2d_backward_bias_span, thread_count(grad_output.size), planes, grad_bias)


VIEWS_REMEMBERED = 256  # plans whose buffers' views are kept (each only while the scratch memory stays)
_views = {}  # id(plan) -> (plan, scratch generation, {name: view}); the plan is held so its id is not reused


def buffers(chosen):
    """The plan's buffers as scratch arrays, by name. The same views are handed out again for as long as the
    scratch memory under them stays (scratch.generation); once a buffer grows, every kept view is dropped,
    so that none keeps an old buffer alive. Callers hold the launch lock (nbconv.kernels.serial), as for
    the scratch memory itself."""
    kept = _views.get(id(chosen))
    if kept is not None and kept[0] is chosen and kept[1] == scratch.generation:
        return kept[2]
    generation = scratch.generation
    views = {buffer.name: scratch(buffer.slot, buffer.shape, buffer.dtype) for buffer in chosen.buffers}
    if scratch.generation != generation or len(_views) >= VIEWS_REMEMBERED:
        _views.clear()
    _views[id(chosen)] = (chosen, scratch.generation, views)
    return views


def run_forward(chosen, input, weight, bias, output):
    """output = conv2d(input, weight) + bias by the plan's algorithm, without the non-finite check."""
    chosen.module.forward(input, weight, bias, output, buffers(chosen), chosen)


def run_backward_input(chosen, grad_output, weight, grad_input):
    """grad_input by the plan's algorithm, without the non-finite check."""
    chosen.module.backward_input(grad_output, weight, grad_input, buffers(chosen), chosen)


def run_backward_weight(chosen, grad_output, input, grad_weight):
    """grad_weight by the plan's algorithm, without the empty-batch and non-finite checks."""
    chosen.module.backward_weight(grad_output, input, grad_weight, buffers(chosen), chosen)


def _explicitly_padded(input, padding_h, padding_w):
    return np.pad(input, ((0, 0), (0, 0), (padding_h, padding_h), (padding_w, padding_w)))


def _exact(chosen, weight, result, other=None):
    """True when `result` needs no recomputing by the definition: for an exact pass, when `weight` (empty for the
    weight gradient, which no weight enters) is finite; for the other algorithms, when `result` and the array
    that met padding or extra zeros (`other`, default the weight) are."""
    if exact_pass(chosen.pass_, chosen.algorithm):
        return all_finite(weight, weight[:0])
    return all_finite(result, weight if other is None else other)


def conv2d_forward(input, weight, bias, output, stride_h, stride_w, padding_h, padding_w,
                   dilation_h, dilation_w, groups):
    """output = conv2d(input, weight) + bias. Strided inputs are read through a contiguous copy; the output must
    be C-contiguous (a ValueError otherwise)."""
    args = (stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups)
    input, weight, bias = contiguous(input), contiguous(weight), contiguous(bias)
    check_read(input.dtype, weight=weight, bias=bias)
    chosen = plan("forward", input.shape, weight.shape, *args, dtype=input.dtype)
    if bias.shape != (0,):
        checks.shape("bias", bias, weight.shape[:1])
    check_written("output", output, chosen.convolution.output_shape, input.dtype)
    run_forward(chosen, input, weight, bias, output)
    if not _exact(chosen, weight, output):  # by the definition: every product with the padded input
        conv2d_forward_direct(_explicitly_padded(input, padding_h, padding_w), weight, bias, output, stride_h,
                              stride_w, 0, 0, dilation_h, dilation_w, groups)


# the prepared passes' algorithms whose module packs the weight once (pack_weight) and runs with it (run_packed)
PACKED_WEIGHT = {"packed": packed, "packed_windows": packed_windows, "pointwise_tiles": pointwise_tiles}
# the prepared passes' algorithms that apply an epilogue to each block of output while it is in the cache
FUSED_EPILOGUE = ("winograd", "winograd4", "gemm", "pointwise", "pointwise_tiles", "packed", "packed_windows")
# the algorithms whose every output is a sum of exactly the definition's products (the padding as explicit zeros,
# nothing extra summed but, in depthwise3x3's input gradient, its padded output gradient's zeros times the
# weight), finished by an epilogue that treats NaN and inf as scale_shift_forward does: with a finite weight
# their result is the definition's whatever the input holds, so a pass checks only the weight. lanes: its forward
# and weight gradient read only output positions' windows of the (explicitly zero-padded) input, and their sums
# for channels past D (zero weights or a zero output gradient times the input) are never stored; its input
# gradient sums the covering (output, tap) pairs and products of the weight with the zeros around the output
# gradient (channels past C never stored). row_lanes: the covering pairs and the weight times the zero columns
# either side of the output gradient's rows
EXACT_PRODUCTS = ("gemm", "pointwise", "pointwise_tiles", "pointwise_weight", "subsampled", "packed", "packed_windows",
                  "depthwise3x3", "lanes", "row_lanes")
# (pass, algorithm) of the other algorithms' passes that are exact too: flat's forward sums for each output it
# stores exactly its window's taps over the explicitly zero-padded image (the columns it computes past OW, Wp
# wide, are never stored); its weight gradient is not (those columns' input values meet its spread zeros)
EXACT_PASSES = (("forward", "flat"),)


def exact_pass(pass_, algorithm):
    """Whether `algorithm`'s `pass_` computes the definition's products and no others (see EXACT_PRODUCTS)."""
    return algorithm in EXACT_PRODUCTS or (pass_, algorithm) in EXACT_PASSES


def conv2d_forward_prepared(input, weight, bias, output, prepared, stride_h, stride_w, padding_h, padding_w,
                            dilation_h, dilation_w, groups, epilogue=None):
    """conv2d_forward for a caller that keeps `prepared`, a dict, for as long as `weight` does not change
    (nn.infer, per version of a layer's weights): what depends on the weight alone, its finiteness, a
    Winograd layer's transformed filters (F(2x2) or F(4x4)) and a packed or packed_windows layer's packed
    weight, is computed on first use and kept there. The algorithm is plan.prepared_plan's, which may differ
    from a training pass's (plan.choose_prepared).

    epilogue: None, or (scale (D,) or (0,), shift likewise, residual (N, D, OH*OW) or (0, 0, 0), activation
    0/1/2) applied to the output as scale_shift_forward would: inside the FUSED_EPILOGUE kernels, to each
    block of output while it is in the cache, else by a pass after them. The exact passes (exact_pass) need no
    non-finite check once the weight is known finite; for the others the check reads the output and, with an
    epilogue, the input too, since an activation can turn a non-finite output finite."""
    run = bind_forward_prepared(input.shape, weight, bias, prepared, stride_h, stride_w, padding_h, padding_w,
                                dilation_h, dilation_w, groups, input.dtype)
    run(input, output, epilogue)


def bind_forward_prepared(input_shape, weight, bias, prepared, stride_h, stride_w, padding_h, padding_w,
                          dilation_h, dilation_w, groups, dtype=np.float32):
    """conv2d_forward_prepared with everything but the input, the output and the epilogue resolved now: the
    plan, the weight's finiteness and its packed or transformed form (kept in `prepared`). Returns
    run(input, output, epilogue), which computes what conv2d_forward_prepared would for an input of
    `input_shape` and `dtype` (C-contiguous) and an output of the plan's shape. The plan is the one for the
    thread count and settings of this moment; the caller binds again when they change. Callers hold the launch
    lock (nbconv.kernels.serial) while binding and while running, as for every kernel call."""
    args = (stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups)
    chosen = prepared_plan(input_shape, weight.shape, *args, dtype=dtype)
    if "finite" not in prepared:
        prepared["finite"] = bool(all_finite(weight, weight[:0]))
    finite, algorithm = prepared["finite"], chosen.algorithm
    exact = finite and exact_pass("forward", algorithm)
    if algorithm in PACKED_WEIGHT:
        module = PACKED_WEIGHT[algorithm]
        key = algorithm.replace("_", " ") + " weight"  # "packed weight", "pointwise tiles weight", ...
        if key not in prepared:
            prepared[key] = module.pack_weight(weight)
        run_packed, packed_weight = module.run_packed, prepared[key]

        def compute(input, output, epilogue):
            run_packed(input, packed_weight, bias, output, buffers(chosen), chosen, epilogue)
    elif algorithm in ("winograd", "winograd4"):
        module = winograd if algorithm == "winograd" else winograd4
        key = algorithm + " filters"  # they depend on the weight alone, not on the batch
        if key not in prepared:
            prepared[key] = module.transformed_filters(weight, chosen)
        run_transformed, filters = module.run_transformed, prepared[key]

        def compute(input, output, epilogue):
            run_transformed(input, filters, bias, output, buffers(chosen), padding_h, padding_w, epilogue)
    elif algorithm in FUSED_EPILOGUE:
        forward = chosen.module.forward

        def compute(input, output, epilogue):
            forward(input, weight, bias, output, buffers(chosen), chosen, epilogue)
    else:
        def compute(input, output, epilogue):
            run_forward(chosen, input, weight, bias, output)
            if epilogue is not None and exact:
                _apply_epilogue(output, epilogue)

    if exact:
        return compute
    fused = algorithm in FUSED_EPILOGUE

    def checked(input, output, epilogue):
        compute(input, output, epilogue)
        if finite and all_finite(output, input if fused and epilogue is not None else output[:0]):
            if epilogue is not None and not fused:
                _apply_epilogue(output, epilogue)
            return
        conv2d_forward_direct(_explicitly_padded(input, padding_h, padding_w), weight, bias, output, stride_h,
                              stride_w, 0, 0, dilation_h, dilation_w, groups)
        if epilogue is not None:
            _apply_epilogue(output, epilogue)
    return checked


def _apply_epilogue(output, epilogue):
    N, D = output.shape[0], output.shape[1]
    flat = output.reshape((N, D, output.shape[2] * output.shape[3]))
    scale_shift_forward(flat, epilogue[0], epilogue[1], epilogue[2], flat, epilogue[3])


def conv2d_backward_input(grad_output, weight, grad_input, stride_h, stride_w, padding_h, padding_w,
                          dilation_h, dilation_w, groups):
    """grad_input (N, C, H, W) of conv2d, given grad_output (N, D, OH, OW) (contiguity as conv2d_forward)."""
    args = (stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups)
    grad_output, weight = contiguous(grad_output), contiguous(weight)
    check_read(grad_output.dtype, weight=weight)
    check_written("grad_input", grad_input, grad_input.shape, grad_output.dtype)
    chosen = plan("backward_input", grad_input.shape, weight.shape, *args, dtype=grad_output.dtype)
    checks.shape("grad_output", grad_output, chosen.convolution.output_shape)
    run_backward_input(chosen, grad_output, weight, grad_input)
    if not _exact(chosen, weight, grad_input):  # by the definition: only the (output, tap) pairs covering a pixel
        conv2d_backward_input_direct(grad_output, weight, grad_input, *args)


def conv2d_backward_weight(grad_output, input, grad_weight, stride_h, stride_w, padding_h, padding_w,
                           dilation_h, dilation_w, groups):
    """grad_weight (D, C/groups, KH, KW) of conv2d, summed over the batch (contiguity as conv2d_forward)."""
    args = (stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups)
    grad_output, input = contiguous(grad_output), contiguous(input)
    check_read(input.dtype, grad_output=grad_output)
    check_written("grad_weight", grad_weight, grad_weight.shape, input.dtype)
    if grad_output.size == 0:  # an empty batch: a sum of nothing (the chunked kernels would leave it unwritten)
        grad_weight[...] = 0
        return
    chosen = plan("backward_weight", input.shape, grad_weight.shape, *args, dtype=input.dtype)
    checks.shape("grad_output", grad_output, chosen.convolution.output_shape)
    run_backward_weight(chosen, grad_output, input, grad_weight)
    if not _exact(chosen, grad_weight[:0], grad_weight, grad_output):  # every product with the padded input
        conv2d_backward_weight_direct(grad_output, _explicitly_padded(input, padding_h, padding_w), grad_weight,
                                      stride_h, stride_w, 0, 0, dilation_h, dilation_w, groups)

"""Fully connected layer kernels for the CPU. input (N, I), weight (O, I) as in PyTorch, bias (O,) or (0,),
output (N, O).

The products call the BLAS from inside @njit kernels (see blas.py), split by rows over parallel chunks
when they are large enough to pay for a parallel launch. The BLAS reads raw addresses, so the public products
check their arrays first (arguments.py): strided inputs are read through a contiguous copy, and an output of
the wrong shape, dtype or layout is refused by name.
"""
from numba import njit

from .activation import relu_value
from ... import checks
from .arguments import check_read, check_written, contiguous
from .blas import NO_TRANS, TRANS, address, gemm, single_threaded
from .fastmath import REDUCE as _REDUCE
from .shared import chunk_bounds
from .threads import num_threads, parallel_parts

PARALLEL_FLOPS = 2e6  # below this a product runs as one chunk (a parallel launch costs a few microseconds)

# Up to this many input rows the forward reads the weight once, a row at a time, for every input row
# (`linear_forward_rows`) instead of calling the BLAS, whose product packs the whole weight first: ResNet-50's
# classifier (2048 -> 1000, weight out of the cache) took 0.33 against 1.53 ms at batch 1 and 0.71 against 1.15
# at batch 8; at 16 rows the BLAS was ahead (benchmarks/NOTES.md, section 92).
ROWS_BATCH = 8


def _chunks(rows, flops):
    return 1 if flops < PARALLEL_FLOPS else max(1, min(rows, num_threads()))


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def linear_forward_chunks_span(span_part, span_parts, input, weight, bias, output, chunks, relu):
    """linear_forward_chunks over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, I = input.shape
    O = output.shape[1]
    has_bias = bias.shape[0] > 0
    span_first, span_last = chunk_bounds(span_part, span_parts, chunks)
    for chunk in range(span_first, span_last):
        first, last = chunk_bounds(chunk, chunks, O)
        if has_bias:
            for n in range(N):
                row = output[n]
                for o in range(first, last):
                    row[o] = bias[o]
        if last > first:
            gemm(NO_TRANS, TRANS, N, last - first, I, 1.0, address(input, 0), I, address(weight, first * I), I,
                 1.0 if has_bias else 0.0, address(output, first), O, output.itemsize)
        if relu:  # the chunk's columns while they are in the cache (NaN stays NaN, as relu_forward)
            for n in range(N):
                row = output[n]
                for o in range(first, last):
                    row[o] = relu_value(row[o])


def linear_forward_chunks(input, weight, bias, output, chunks, relu=0):
    """output[:, cols] = input @ weight[cols].T (+ bias[cols]), then the ReLU when relu is 1, the O output
    columns cut into `chunks`: each chunk then packs only its own rows of the weight, which costs more than
    the product at LeNet's sizes (split by input rows instead, fc1's forward was 1.5x slower)."""
    parallel_parts(linear_forward_chunks_span, chunks, input, weight, bias, output, chunks, relu)


@njit(nogil=True, cache=True, error_model="numpy", fastmath=_REDUCE, no_cfunc_wrapper=True)
def linear_forward_rows_span(span_part, span_parts, input, weight, bias, output, relu):
    """linear_forward_rows over the span_part-th of span_parts slices of the output columns (threads.py)."""
    N, I = input.shape
    has_bias = bias.shape[0] > 0
    first, last = chunk_bounds(span_part, span_parts, output.shape[1])
    for o in range(first, last):
        weights = weight[o]
        for n in range(N):
            values = input[n]
            total = output.dtype.type(0)
            for i in range(I):
                total += weights[i] * values[i]
            if has_bias:
                total += bias[o]
            output[n, o] = relu_value(total) if relu else total


def linear_forward_rows(input, weight, bias, output, parts, relu=0):
    """output (N, O) = input (N, I) @ weight (O, I).T (+ bias) (then the ReLU when relu is 1), each output column
    one sum over I (reassociated, so vectorised) for every input row while the weight's row is in the cache:
    the weight is read once from memory, in order, for small N."""
    parallel_parts(linear_forward_rows_span, parts, input, weight, bias, output, relu)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def linear_backward_input_chunks_span(span_part, span_parts, grad_output, weight, grad_input, chunks):
    """linear_backward_input_chunks over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, O = grad_output.shape
    I = weight.shape[1]
    span_first, span_last = chunk_bounds(span_part, span_parts, chunks)
    for chunk in range(span_first, span_last):
        first, last = chunk_bounds(chunk, chunks, N)
        if last > first:
            gemm(NO_TRANS, NO_TRANS, last - first, I, O, 1.0, address(grad_output, first * O), O,
                 address(weight, 0), I, 0.0, address(grad_input, first * I), I, grad_input.itemsize)


def linear_backward_input_chunks(grad_output, weight, grad_input, chunks):
    """grad_input[rows] = grad_output[rows] (rows, O) @ weight (O, I)."""
    parallel_parts(linear_backward_input_chunks_span, chunks, grad_output, weight, grad_input, chunks)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def linear_backward_weight_chunks_span(span_part, span_parts, grad_output, input, grad_weight, chunks):
    """linear_backward_weight_chunks over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, O = grad_output.shape
    I = input.shape[1]
    span_first, span_last = chunk_bounds(span_part, span_parts, chunks)
    for chunk in range(span_first, span_last):
        first, last = chunk_bounds(chunk, chunks, O)
        if last > first:
            gemm(TRANS, NO_TRANS, last - first, I, N, 1.0, address(grad_output, first), O, address(input, 0), I,
                 0.0, address(grad_weight, first * I), I, grad_weight.itemsize)


def linear_backward_weight_chunks(grad_output, input, grad_weight, chunks):
    """grad_weight[rows] = grad_output.T[rows] (rows, N) @ input (N, I); the rows of O cut into `chunks`
    (each chunk sums the whole batch itself, so no partial sums are needed)."""
    parallel_parts(linear_backward_weight_chunks_span, chunks, grad_output, input, grad_weight, chunks)


def linear_forward(input, weight, bias, output):
    """output[n, o] = bias[o] + sum_i input[n, i] * weight[o, i]."""
    linear_forward_relu(input, weight, bias, output, 0)


def linear_forward_relu(input, weight, bias, output, relu):
    """linear_forward, then the ReLU inside the same kernel call when relu is 1 (fused.linear_relu_forward)."""
    input, weight, bias = contiguous(input), contiguous(weight), contiguous(bias)
    checks.ndim("input", input, (2,), "(N, I)")
    N, I = input.shape
    check_read(input.dtype, weight=weight, bias=bias)
    checks.ndim("weight", weight, (2,), "(O, I)")
    O = weight.shape[0]
    checks.shape("weight", weight, (O, I))
    if bias.shape != (0,):
        checks.shape("bias", bias, (O,))
    check_written("output", output, (N, O), input.dtype)
    chunks = _chunks(output.shape[1], 2.0 * N * I * output.shape[1])
    if N <= ROWS_BATCH:
        linear_forward_rows(input, weight, bias, output, chunks, relu)
        return
    with single_threaded():
        linear_forward_chunks(input, weight, bias, output, chunks, relu)


def linear_backward_input(grad_output, weight, grad_input):
    """grad_input (N, I) = grad_output (N, O) @ weight (O, I)."""
    grad_output, weight = contiguous(grad_output), contiguous(weight)
    checks.ndim("grad_output", grad_output, (2,), "(N, O)")
    checks.ndim("weight", weight, (2,), "(O, I)")
    N, O = grad_output.shape
    check_read(grad_output.dtype, weight=weight)
    checks.shape("weight", weight, (O, weight.shape[1]))
    check_written("grad_input", grad_input, (N, weight.shape[1]), grad_output.dtype)
    with single_threaded():
        linear_backward_input_chunks(grad_output, weight, grad_input, _chunks(N, 2.0 * N * O * weight.shape[1]))


def linear_backward_weight(grad_output, input, grad_weight):
    """grad_weight (O, I) = grad_output.T (O, N) @ input (N, I)."""
    grad_output, input = contiguous(grad_output), contiguous(input)
    checks.ndim("grad_output", grad_output, (2,), "(N, O)")
    checks.ndim("input", input, (2,), "(N, I)")
    N, O = grad_output.shape
    check_read(grad_output.dtype, input=input)
    checks.shape("input", input, (N, input.shape[1]))
    check_written("grad_weight", grad_weight, (O, input.shape[1]), grad_output.dtype)
    with single_threaded():
        linear_backward_weight_chunks(grad_output, input, grad_weight, _chunks(O, 2.0 * N * O * input.shape[1]))


def linear_backward_bias(grad_output, grad_bias):
    """grad_bias (O,) = grad_output (N, O) summed over N."""
    checks.ndim("grad_output", grad_output, (2,), "(N, O)")
    check_read(grad_output.dtype)
    check_written("grad_bias", grad_bias, grad_output.shape[1:], grad_output.dtype)
    linear_bias_sums(grad_output, grad_bias)


@njit(cache=True, fastmath=_REDUCE, no_cfunc_wrapper=True)
def linear_bias_sums(grad_output, grad_bias):
    """linear_backward_bias's sums, unchecked."""
    N, O = grad_output.shape
    grad_bias[:] = 0
    for n in range(N):
        for o in range(O):
            grad_bias[o] += grad_output[n, o]

"""The weight gradient of 1x1, stride-1, unpadded convolutions on small maps ('pointwise_weight'), several
images to a product.

gemm.py's pointwise weight gradient runs one product per image, (C x P) @ (P x D): on a 7x7 map that is
49 deep, and each product reads and writes the chunk's whole (C x D) partial sum (4 MB for 512 -> 2048),
and its (C x D) partial sums, transposed, are added into the (D x C) weight gradient down its columns (6 ms
for two 4 MB partials, more than a third of the pass): the pass ran at about half the BLAS's rate. Here the
images of a chunk go `images_per_product` at a time into two packed buffers, input (C, images*P) and output
gradient (D, images*P), and one product of depth images*P adds them into the chunk's partial sum, kept in
the weight's own (D x C) layout, so the chunks' sums are added row by row. Chunks are claimed by the threads
(claims.py) and their images, products and partial sums depend on the shape alone, so the result does not
depend on the thread count. Each product's sums are the definition's (no padding, nothing extra).
"""
from numba import njit

from ..blas import NO_TRANS, TRANS, address, gemm, single_threaded
from ..shared import chunk_bounds
from ..threads import num_threads, parallel_parts, thread_count
from .blocks import max_chunks
from .claims import claim, claims
from .gemm import applies_pointwise

PRODUCT_DEPTH = 384  # images packed into one product until it is this deep (at least one image)


def images_per_product(positions):
    """How many images of `positions` output positions each go into one product: PRODUCT_DEPTH deep."""
    return max(1, PRODUCT_DEPTH // max(1, positions))


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_backward_weight_pointwise_span(span_part, span_parts, grad_output, input, packed_input, packed_grad,
                                          partial, groups, images, counter):
    """conv2d_backward_weight_pointwise, part span_part of span_parts (threads.py): chunks claimed from counter,
    packed in part span_part's buffers."""
    N, C = input.shape[0], input.shape[1]
    D = grad_output.shape[1]
    P = input.shape[2] * input.shape[3]
    Cg, Dg = C // groups, D // groups
    chunks = partial.shape[0]
    flat_input = input.reshape((N, C, P))
    flat_grad = grad_output.reshape((N, D, P))
    xs, gs = packed_input[span_part], packed_grad[span_part]
    size = input.itemsize
    while True:
        chunk = claim(counter)
        if chunk >= chunks:
            break
        first, last = chunk_bounds(chunk, chunks, N)
        for n0 in range(first, last, images):
            n1 = min(last, n0 + images)
            depth = (n1 - n0) * P
            if images == 1:  # one image a product: read in place
                for g in range(groups):
                    gemm(NO_TRANS, TRANS, Dg, Cg, P, 1.0, address(flat_grad, (n0 * D + g * Dg) * P), P,
                         address(flat_input, (n0 * C + g * Cg) * P), P, 0.0 if n0 == first else 1.0,
                         address(partial[chunk], g * Dg * Cg), Cg, size)
                continue
            for n in range(n0, n1):
                column = (n - n0) * P
                for c in range(C):
                    target, source = xs[c, column:column + P], flat_input[n, c]
                    for p in range(P):
                        target[p] = source[p]
                for d in range(D):
                    target, source = gs[d, column:column + P], flat_grad[n, d]
                    for p in range(P):
                        target[p] = source[p]
            ld = xs.shape[1]
            for g in range(groups):  # (Dg, Cg) += gs_g @ xs_g.T
                gemm(NO_TRANS, TRANS, Dg, Cg, depth, 1.0, address(gs, g * Dg * ld), ld, address(xs, g * Cg * ld),
                     ld, 0.0 if n0 == first else 1.0, address(partial[chunk], g * Dg * Cg), Cg, size)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def sum_rows_span(span_part, span_parts, partial, grad_weight):
    """grad_weight's rows (D, C/groups) = partial's (chunks, D, C/groups) summed in chunk order, over the
    span_part-th of span_parts slices of the rows."""
    chunks, D, Cg = partial.shape
    flat = grad_weight.reshape((D, Cg))
    first, last = chunk_bounds(span_part, span_parts, D)
    for d in range(first, last):
        row = flat[d]
        source = partial[0, d]
        for k in range(Cg):
            row[k] = source[k]
        for chunk in range(1, chunks):
            source = partial[chunk, d]
            for k in range(Cg):
                row[k] += source[k]


def conv2d_backward_weight_pointwise(grad_output, input, grad_weight, packed_input, packed_grad, partial, groups,
                                     images):
    """grad_weight (D, C/groups, 1, 1) = sum over images of grad_output[n] (D, P) @ input[n].T (P, C), per
    group. packed_input (parts, C, >= images*P), packed_grad (parts, D, >= images*P): one pair per thread;
    partial (chunks, groups, D/groups, C/groups), summed in chunk order."""
    if images > 1 and min(packed_input.shape[2], packed_grad.shape[2]) < images * input.shape[2] * input.shape[3]:
        raise ValueError(f"packed buffers of {packed_input.shape[2]} columns for {images} images a product")
    parallel_parts(conv2d_backward_weight_pointwise_span, min(num_threads(), partial.shape[0],
                                                              packed_input.shape[0]),
                   grad_output, input, packed_input, packed_grad, partial, groups, images, claims())
    flat_partial = partial.reshape((partial.shape[0], partial.shape[1] * partial.shape[2], partial.shape[3]))
    parallel_parts(sum_rows_span, thread_count(partial.size), flat_partial, grad_weight)


# The plan's surface (see plan.py)
def applies(pass_, convolution):
    """The weight gradient of 1x1, stride-1, unpadded convolutions (gemm.applies_pointwise)."""
    return pass_ == "backward_weight" and applies_pointwise(pass_, convolution)


def buffers(pass_, convolution, itemsize, threads):
    """packed_input (parts, C, images*P) and packed_grad (parts, D, images*P), one pair per thread that can
    have a chunk, and partial_sums (chunks, groups, D/groups, C/groups); chunks as blocks.max_chunks gives
    the weight gradient (the shape's alone)."""
    N, C, H, W = convolution.input_shape
    D = convolution.weight_shape[0]
    groups = convolution.groups
    positions = H * W
    chunks = max(1, min(N, max_chunks(pass_, threads, C * D // groups * itemsize)))
    parts = max(1, min(threads, chunks))
    images = min(N, images_per_product(positions))
    columns = images * positions if images > 1 else 1  # one image a product packs nothing
    return (("packed_input", "col", (parts, C, columns)), ("packed_grad", "padded", (parts, D, columns)),
            ("partial_sums", "partial", (chunks, groups, D // groups, C // groups)))


def backward_weight(grad_output, input, grad_weight, buffers, plan):
    N, C, H, W = input.shape
    with single_threaded():
        conv2d_backward_weight_pointwise(grad_output, input, grad_weight, buffers["packed_input"],
                                         buffers["packed_grad"], buffers["partial_sums"], plan.convolution.groups,
                                         min(N, images_per_product(H * W)))

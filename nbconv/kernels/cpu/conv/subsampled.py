"""1x1 convolutions with a stride and no padding ('subsampled'): the input's every stride-th pixel copied into
a compact (N, C, OH*OW) array, then one matrix product per image, by numpy's BLAS; nothing compiled.

A strided 1x1 layer (ResNet's shortcut projections) reads each kept pixel once: its unrolled matrix is the
subsampled input itself, so im2col gains nothing, and the products are small (ResNet-20's 16 -> 32 and
32 -> 64 at batch 64: 17 MFLOP a pass). gemm.py ran them, but its three span kernels and their row helpers
cost ~6 CPU s to compile on an empty JIT cache, for a model that runs gemm nowhere else; numpy's strided
copies and `np.matmul` (which calls the BLAS's gemm for each image of a stack) cost nothing to compile.

The passes run on the kernel threads (threads.parallel_parts), each part a contiguous slice of the images,
as Python that releases the GIL inside numpy's copies and products. Every image's product is one BLAS call
of the same shape whatever the part, and the weight gradient's per-image products are added in image
order, so the results do not depend on the thread count. The products are the definition's and no others
(EXACT_PRODUCTS in dispatch.py): with a finite weight, NaN and inf reach exactly their receptive field.
"""
import numpy as np

from ..blas import single_threaded
from ..threads import parallel_parts, thread_count


def applies(pass_, convolution):
    """1x1 filters with a stride other than (1, 1) and no padding (dilation means nothing for a 1x1 filter)."""
    _, _, KH, KW = convolution.weight_shape
    return (KH == KW == 1 and (convolution.stride_h, convolution.stride_w) != (1, 1)
            and convolution.padding_h == convolution.padding_w == 0)


def buffers(pass_, convolution, itemsize, threads):
    """(name, scratch slot, shape) of each buffer: 'subsampled' (N, C, OH*OW), the input's kept pixels (the
    forward pass and weight gradient) or the input gradient at those pixels (the input gradient); the weight
    gradient adds 'products' (N, D, C/groups), each image's share, summed in image order."""
    N, C = convolution.input_shape[:2]
    D, Cg = convolution.weight_shape[:2]
    _, _, OH, OW = convolution.output_shape
    subsampled = ("subsampled", "col", (N, C, OH * OW))
    if pass_ == "backward_weight":
        return subsampled, ("products", "partial", (N, D, Cg))
    return (subsampled,)


def _images(part, parts, N):
    """The part-th of `parts` near-equal contiguous slices of range(N)."""
    return slice(part * N // parts, (part + 1) * N // parts)


def _grouped(array, groups):
    """(images, G*K, P) -> (images, G, K, P): each group's rows of a matrix apart."""
    return array.reshape(array.shape[0], groups, array.shape[1] // groups, array.shape[2])


def _forward_span(part, parts, input, weight, bias, output, subsampled, stride_h, stride_w, groups):
    images = _images(part, parts, input.shape[0])
    kept = subsampled[images]
    N, C, OH, OW = kept.shape[0], kept.shape[1], output.shape[2], output.shape[3]
    np.copyto(kept.reshape(N, C, OH, OW), input[images, :, ::stride_h, ::stride_w])
    result = output[images].reshape(N, groups, weight.shape[0] // groups, OH * OW)
    np.matmul(weight.reshape(groups, weight.shape[0] // groups, weight.shape[1]), _grouped(kept, groups),
              out=result)
    if bias.shape[0]:
        result += bias.reshape(groups, -1, 1)


def _backward_input_span(part, parts, grad_output, weight, grad_input, subsampled, stride_h, stride_w, groups):
    images = _images(part, parts, grad_input.shape[0])
    kept = subsampled[images]
    N, C, OH, OW = kept.shape[0], kept.shape[1], grad_output.shape[2], grad_output.shape[3]
    D, Cg = weight.shape[0], weight.shape[1]
    np.matmul(weight.reshape(groups, D // groups, Cg).transpose(0, 2, 1),
              grad_output[images].reshape(N, groups, D // groups, OH * OW), out=_grouped(kept, groups))
    target = grad_input[images]
    target.fill(0)
    target[:, :, ::stride_h, ::stride_w] = kept.reshape(N, C, OH, OW)


def _backward_weight_span(part, parts, grad_output, input, products, subsampled, stride_h, stride_w, groups):
    images = _images(part, parts, input.shape[0])
    kept = subsampled[images]
    N, C, OH, OW = kept.shape[0], kept.shape[1], grad_output.shape[2], grad_output.shape[3]
    D = grad_output.shape[1]
    np.copyto(kept.reshape(N, C, OH, OW), input[images, :, ::stride_h, ::stride_w])
    np.matmul(grad_output[images].reshape(N, groups, D // groups, OH * OW),
              _grouped(kept, groups).transpose(0, 1, 3, 2),
              out=products[images].reshape(N, groups, D // groups, C // groups))


def _parts(input):
    """Threads for a pass over `input`'s batch: one below threads.MIN_PARALLEL_WORK values, never more than
    images."""
    return max(1, min(input.shape[0], thread_count(input.size)))


def forward(input, weight, bias, output, buffers, plan):
    """output (N, D, OH, OW) = weight (D, C/groups) @ input[:, :, ::sh, ::sw] per image and group, + bias."""
    with single_threaded():
        parallel_parts(_forward_span, _parts(input), input, weight, bias, output, buffers["subsampled"],
                       plan.convolution.stride_h, plan.convolution.stride_w, plan.convolution.groups)


def backward_input(grad_output, weight, grad_input, buffers, plan):
    """grad_input (N, C, H, W): weight.T @ grad_output[n] per group at the kept pixels, zero elsewhere."""
    with single_threaded():
        parallel_parts(_backward_input_span, _parts(grad_input), grad_output, weight, grad_input,
                       buffers["subsampled"], plan.convolution.stride_h, plan.convolution.stride_w,
                       plan.convolution.groups)


def backward_weight(grad_output, input, grad_weight, buffers, plan):
    """grad_weight (D, C/groups, 1, 1) = sum over images, in order, of grad_output[n] @ kept pixels[n].T."""
    products = buffers["products"]
    with single_threaded():
        parallel_parts(_backward_weight_span, _parts(input), grad_output, input, products, buffers["subsampled"],
                       plan.convolution.stride_h, plan.convolution.stride_w, plan.convolution.groups)
    np.add.reduce(products, axis=0, out=grad_weight.reshape(products.shape[1:]))

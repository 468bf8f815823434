"""Row and padding helpers shared by the stride-1 convolution algorithms (wide, shift, Winograd, depthwise).

They move whole rows between an image (C, H, W) and a zero-padded copy laid out flat (C*rows*Wp, plus
slack), and between a product taken Wp wide and an output (N, D, OH, OW) that is OW wide. Rows are 1-D
slices indexed from 0, which LLVM vectorises.
"""
from numba import njit

from ..shared import fill_zero


@njit(cache=True, no_cfunc_wrapper=True)
def pad_rows(image, padded, first_row, rows, padding_h, padding_w, padded_w):
    """padded[c*rows*Wp + r*Wp + w + pw] = image[c, first_row + r - ph, w] for r < rows, zero where that
    row or column lies in the padding (and in the slack after the last channel)."""
    fill_zero(padded)
    copy_rows(image, padded, first_row, rows, padding_h, padding_w, padded_w)


@njit(cache=True, no_cfunc_wrapper=True)
def copy_rows(image, padded, first_row, rows, padding_h, padding_w, padded_w):
    """pad_rows without the zeros: the image's rows copied into a padded copy whose padding is zero already."""
    C, H, W = image.shape
    for c in range(C):
        for r in range(rows):
            h = first_row + r - padding_h
            if 0 <= h < H:
                start = (c * rows + r) * padded_w + padding_w
                target = padded[start:start + W]
                source = image[c, h]
                for q in range(W):
                    target[q] = source[q]


@njit(cache=True, no_cfunc_wrapper=True)
def crop_image(padded, image, padding_h, padding_w, padded_h, padded_w):
    """The adjoint of pad_rows for a whole image: image[c, h, w] = padded[c*Hp*Wp + (h + ph)*Wp + w + pw]."""
    C, H, W = image.shape
    for c in range(C):
        for h in range(H):
            start = (c * padded_h + h + padding_h) * padded_w + padding_w
            source = padded[start:start + W]
            target = image[c, h]
            for q in range(W):
                target[q] = source[q]


@njit(cache=True, inline="always")
def compact_rows(product, output, n, oh0, rows, padded_w, bias):
    """output[n, d, oh0 + r] = product[d, r*Wp : r*Wp + OW] + bias[d] (no bias when bias is empty): the
    rows of a Wp-wide product without their extra columns."""
    D, OW = output.shape[1], output.shape[3]
    has_bias = bias.shape[0] > 0
    for d in range(D):
        offset = bias[d] if has_bias else 0
        for r in range(rows):
            source = product[d, r * padded_w:r * padded_w + OW]
            target = output[n, d, oh0 + r]
            for q in range(OW):
                target[q] = source[q] + offset


@njit(cache=True, no_cfunc_wrapper=True)
def spread_rows(grad_output, wide, n, oh0, rows, padded_w):
    """wide[d, r*Wp + x] = grad_output[n, d, oh0 + r, x] for x < OW, zero for OW <= x < Wp."""
    D, OW = grad_output.shape[1], grad_output.shape[3]
    for d in range(D):
        target_row = wide[d]
        for r in range(rows):
            target = target_row[r * padded_w:(r + 1) * padded_w]
            source = grad_output[n, d, oh0 + r]
            for q in range(OW):
                target[q] = source[q]
            for q in range(OW, padded_w):
                target[q] = 0

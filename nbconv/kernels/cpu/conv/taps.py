"""Where the taps of a direct convolution read, for kernels that sum whole rows of a padded source at one
offset per tap (lanes.py): the taps' offsets in a zero-padded image, and the transposed convolution's taps by
input phase, which the input gradient of a strided layer runs as one stride-1 convolution per phase.

The input gradient, split by the input's phase (ry, rx) (ry = 0..s-1 rows mod s): the input pixels of one
phase receive only the taps with (ry + ph - i*dh) % s == 0, a stride-1 convolution of the zero-padded output
gradient with that subset of the flipped filters (for stride 1 the one phase is the whole transposed
convolution).
"""
import functools

import numpy as np


@functools.lru_cache(maxsize=256)
def tap_offsets(C, KH, KW, dilation_h, dilation_w, padded_h, padded_w):
    """offsets[(c*KH + i)*KW + j] = c*Hp*Wp + i*dh*Wp + j*dw: where tap (c, i, j) starts reading in a
    zero-padded image, channels Hp x Wp apart (int64; kept per geometry, never written)."""
    c, i, j = np.meshgrid(np.arange(C), np.arange(KH), np.arange(KW), indexing="ij")
    offsets = c * (padded_h * padded_w) + i * dilation_h * padded_w + j * dilation_w
    return np.ascontiguousarray(offsets.reshape(-1), dtype=np.int64)


def transposed_geometry(H, W, OH, OW, KH, KW, stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w):
    """(top, left, Hs, Ws): the zero rows above and columns left of the output gradient in the input
    gradient's source, and that source's size: every phase's taps read rows top + (ry + ph - i*dh) // s + yy,
    all inside it."""
    top = max(0, -((padding_h - dilation_h * (KH - 1)) // stride_h))
    left = max(0, -((padding_w - dilation_w * (KW - 1)) // stride_w))
    rows = top + max(OH, (H - 1) // stride_h + (stride_h - 1 + padding_h) // stride_h + 1)
    cols = left + max(OW, (W - 1) // stride_w + (stride_w - 1 + padding_w) // stride_w + 1)
    return top, left, rows, cols


@functools.lru_cache(maxsize=256)
def transposed_taps(D, KH, KW, stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, top, left,
                    source_w, source_plane):
    """The taps of each input phase (ry, rx), phase = ry*sw + rx: the (d, i, j) with (ry + ph - i*dh) and
    (rx + pw - j*dw) multiples of the stride, as (offsets (phases, D*KH*KW): where each reads in the padded
    output gradient; columns (phases, D*KH*KW): its index d*KH*KW + i*KW + j; counts (phases,)). Kept per
    geometry, never written."""
    phases = stride_h * stride_w
    offsets = np.zeros((phases, D * KH * KW), np.int64)
    columns = np.zeros((phases, D * KH * KW), np.int64)
    counts = np.zeros(phases, np.int64)
    for ry in range(stride_h):
        for rx in range(stride_w):
            phase = ry * stride_w + rx
            rows = [(i, (ry + padding_h - i * dilation_h) // stride_h) for i in range(KH)
                    if (ry + padding_h - i * dilation_h) % stride_h == 0]
            cols = [(j, (rx + padding_w - j * dilation_w) // stride_w) for j in range(KW)
                    if (rx + padding_w - j * dilation_w) % stride_w == 0]
            taps = [(d * source_plane + (a + top) * source_w + b + left, (d * KH + i) * KW + j)
                    for d in range(D) for i, a in rows for j, b in cols]
            counts[phase] = len(taps)
            if taps:
                offsets[phase, :len(taps)], columns[phase, :len(taps)] = zip(*taps)
    return offsets, columns, counts


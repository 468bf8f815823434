"""The convolution plan: for one convolution and one pass, which algorithm runs and which buffers it needs.

This is the only place the choice and its thresholds live; the public kernels (dispatch.py), the JIT
warm-up, the tests and `nbconv plan` / `nbconv bench --algorithm` all ask `plan()`.

Passes: "forward" (output from input), "backward_input" (input gradient), "backward_weight" (weight
gradient). The choice, in order:
- depthwise (one input channel per group): 'depthwise3x3' for one 3x3 filter per channel, stride 1, no
  dilation, padding <= 2 (every tap unrolled, depthwise.py), and for the forward and weight gradient of M
  such filters a channel (3.6-3.9x direct's loop nests at 2 x 64 channels, 56x56); else 'direct' (loop
  nests, direct.py);
- 1x1, stride 1, no padding: 'pointwise' (gemm.py reads the input itself as the unrolled matrix); their weight
  gradient on maps of at most POINTWISE_WEIGHT_MOST_POSITIONS positions: 'pointwise_weight' (several images
  packed into one deeper product, pointwise_weight.py); in float32 their input gradient and, with no more
  output channels than inputs, their forward pass by 'pointwise_tiles' (8 rows x 48 positions summed in
  registers, the input read in place, pointwise_tiles.py) where its last vector of positions overlaps the one
  before by at most POINTWISE_TILES_MOST_OVERLAP of the positions (not 14x14 or 7x7 maps; see _pointwise_tiles);
- narrow layers: 'lanes' (direct convolution summed in vector registers with output channels in the vector
  lanes, 16 channels x 4 positions of a row, lanes.py) for ungrouped, undilated 3x3 layers of stride 1 or 2
  with LANES_CHANNELS to LANES_MOST_CHANNELS output channels (and at most that many inputs), LANES_TAPS
  taps a filter or more (3 input channels: a colour image's first layer) and outputs at most LANES_WIDEST
  wide, that are not Winograd's (below), every pass (ResNet-20's layers); lanes also runs the forward pass and
  weight gradient of ungrouped, undilated stride-1 layers with filters over 3 taps both ways, 16 to
  LANES_LARGE_CHANNELS output channels and outputs at most LANES_WIDEST wide (LeNet-5's second layer); their
  input gradient, with ROW_LANES_MOST_CHANNELS input channels or fewer and inputs at least 8 wide, is
  'row_lanes' (8 positions of a row in the vector lanes, row_lanes.py), else goes on below, to 'strips';
- stride 1, with c = min(output, input) channels per group:
  - 'winograd' (F(2x2, 3x3), winograd.py) for 3x3, undilated, ungrouped layers with c >= WINOGRAD_CHANNELS
    and c x output width >= WINOGRAD_WORK: the forward pass, and the input gradient when padding <= 2
    (else 'shift'); 'winograd4' (F(4x4, 3x3), winograd4.py) instead for those with c >= WINOGRAD4_CHANNELS,
    or c >= WINOGRAD4_WIDE_CHANNELS and outputs at least WINOGRAD4_WIDE wide, if the outputs are at least
    WINOGRAD4_NARROWEST wide; for these layers the weight gradient is 'winograd4_weight' (F(4x4, 3x3),
    winograd4_weight.py) with c >= WINOGRAD4_WEIGHT_CHANNELS, else 'winograd_weight' (F(2x2, 3x3),
    winograd_weight.py);
  - 'strips' for 3x3 undilated ungrouped layers with c >= SHIFT_CHANNELS that are not Winograd's, when the
    output is at most STRIPS_NARROW wide (the weight gradient: STRIPS_NARROW_WEIGHT);
  - else 'shift' (one product per window tap, shift.py) when c >= SHIFT_CHANNELS: forward and input
    gradient; the weight gradient too while c <= SHIFT_WEIGHT_CHANNELS, 'wide' above;
  - 'flat' (vectorised loops over the flat padded image, flat.py) for the forward pass and the weight
    gradient of ungrouped layers with at most FLAT_CHANNELS output channels and FLAT_TAPS = C*KH*KW taps a
    filter (LeNet-5's first layer, 1 -> 6 channels 5x5); their input gradient goes to 'wide' or 'strips';
  - else 'wide' (im2col over whole padded rows, wide.py), every pass, or, where wide's padded rows are at
    least STRIPS_WASTE times the output width (its products would be that much larger: LeNet-5's second
    layer, 14 / 10), 'strips' (im2col over output rows copied as 8-value blocks, strips.py);
- 1x1 filters with a stride and no padding (ResNet's shortcut projections): 'subsampled' (the kept pixels
  copied, then one BLAS product an image by numpy: nothing to JIT-compile, subsampled.py);
- any other stride: 'gemm' (im2col over output rows, gemm.py).

Measurements behind the thresholds (forward + input gradient, 3x3, alternating runs): Winograd against
shift: 64 channels 1.26x at 14 wide but 0.49x at 7; 48 channels 1.10x at 14; 32 channels 1.06x at 28 and
0.91x at 14; 16 channels 0.86x at 56 and 0.72x at 28. Its 16 products per block are c deep and about OW/2
wide. shift's products are c deep, so below SHIFT_CHANNELS the unrolling (wide) wins. The weight gradient
by shift packs the image once per tap inside the BLAS, against one big product for wide: it wins up to
32 channels (1.5x at 16 and 28 wide, 1.25x at 32 and 28 wide; but 0.85x at 32 and 56 wide), and loses
from 48 (0.85-0.9x at 48-128). F(4x4) against F(2x2) (benchmarks/winograd4_layers.py, one thread, thread CPU time, 5 alternating rounds,
loaded machine), forward / input gradient: 8 x 64 x 56 x 56 1.11x / 1.12x, 16 x 128 x 28 x 28 1.23x / 1.37x,
ResNet-18's 128 x 28, 256 x 14 and 512 x 7 (batch 8) 1.27-1.40x, 1.27-1.29x, 1.80-1.95x, VGG's 256 x 56,
512 x 28, 512 x 14 (batch 2-8) 1.54-2.23x; but 64 channels at 28 wide 1.01-1.06x (0.82-0.95x in an earlier
run), 48 at 28 0.81-0.86x, 32 at 28 0.81-0.85x, and at batch 1 256 x 14 0.87x / 1.02x (its float32 error is
also 6-9x F(2x2)'s: benchmarks/NOTES.md, section 63). The Winograd weight gradient against the previous choice (one thread,
alternating): 1.15x on 8 x 64 x 56 x 56 (wide), 7-10x on 256-512 channels at 14 and 7 wide (wide, whose
partial sums then spilled from the cache); but 0.46-0.57x on ResNet-20's narrow layers (128 images of
16-64 channels, 32-8 wide, against shift and wide), where its tile transforms cost more than the products
save: so it follows the forward's Winograd rule. The weight gradient by F(4x4) (winograd4_weight.py) against
F(2x2)'s (benchmarks/winograd4_layers.py, one thread, thread CPU time, loaded machine): 8 x 64 x 56 x 56 1.60x,
16 x 128 x 28 x 28 1.75x (two threads 1.34x, 1.64x), ResNet-18's 128 x 28, 256 x 14, 512 x 7 1.51x, 1.68x,
1.80x, 1.4-2.8x on every Winograd layer from 32 channels 21 wide to 512 channels 4 wide, 1.02-1.23x at batch 1:
so every Winograd layer's weight gradient is F(4x4)'s (WINOGRAD4_WEIGHT_CHANNELS = WINOGRAD_CHANNELS; its
float32 error, 1-3e-6 of the largest gradient, is 3-4x F(2x2)'s: benchmarks/NOTES.md, section 66).
On ResNet-20's layers (batch 128; 16, 32, 64 channels at 32, 16, 8 wide), alternating rounds, one thread
(thread CPU time) and two (wall time), loaded machine, strips against the previous choice: weight gradient
1.10-1.25x at all three (against shift at 16 and 32 channels, wide at 64); forward and input gradient
1.05-1.25x at 16 and 8 wide (against shift); at 32 wide 0.93-1.03x (shift kept there).
flat against wide on LeNet-5's first layer (64x1x28x28 -> 6, 5x5, padding 2),
forward + weight gradient, one thread, alternating rounds: 1.83x; the products of wide have a 6-long side
there, which OpenBLAS runs at ~16 GFLOP/s. On LeNet-5's second layer (6 -> 16) wide stays ahead: flat's
forward 0.46x, its weight gradient 0.9-1.05x.

blocked against the previous choice on ResNet-20's layers (batch 128) and LeNet-5's second (batch 64), one
thread, thread CPU time, alternating rounds, loaded machine (benchmarks/blocked_layers.py): forward 1.36x at
16 channels 32 wide (against shift), 1.24x at 32 x 16 and 1.05x at 64 x 8 (strips), 1.42x and 1.32x on the
stride-2 layers 16 -> 32 and 32 -> 64 (gemm), 1.17x on LeNet-5's 5x5 (strips; left there: 0.1 ms of a 6 ms
step, against 3-4 s more of cold compiling, blocked's forward in place of strips' whose row helper its
gradients share). Input gradient 1.05x at 16 x 32
(shift), 1.09x at 32 x 16 (strips), 1.22x on the stride-2 16 -> 32 (gemm); but 0.90x at 64 x 8, 1.00x on the
stride-2 layer 8 wide and 0.63x on LeNet-5's 5x5, which keep strips and gemm. Weight gradient 1.50x at 16 x 32,
1.05x at 32 x 16, 1.33x on the stride-2 16 -> 32; but 0.57x at 64 x 8 and 0.95x on the stride-2 layer 8 wide,
where its sums run over 80-position grids (the 10-wide padded rows of 8 outputs) and the per-block set-up
and lane sums weigh, so those keep strips and gemm. Against PyTorch (oneDNN) in the same runs: forward
1.1x at 16 x 32, 0.99x at 32 x 16, 0.87x at 64 x 8, 0.68-0.69x on the stride-2 layers.

lanes against blocked and the previous choice on the same layers, same benchmark (--extra lanes / --against
lanes), one thread, thread CPU time, 5 rounds, loaded machine: at 64 x 8 forward 1.14x blocked, input gradient
1.12x strips, weight gradient 1.09x strips (blocked's was 0.58x strips there); stride-2 32 -> 64 (8 wide)
forward 1.10x blocked, input gradient 1.25x gemm, weight gradient 1.51x gemm; at 32 x 16 1.06x, 1.04x and
1.17x blocked; stride-2 16 -> 32 (16 wide) 1.05x, 1.03x, 1.07x blocked; but at 16 x 32 0.98x, 0.99x and 0.90x
blocked, which keeps the 32-wide layers. Its blocks compute only outputs (a row rounded up to 4 positions)
where blocked's grid carries the padded rows' extra columns (25% at 8 wide), and its weight gradient sums a
whole image per register with no lane sums. Against PyTorch in the same runs: forward 1.15x at 64 x 8, 1.14x
at 32 x 16, 0.85x and 0.95x on the stride-2 layers; input gradient 1.07-3.2x; weight gradient 1.02x at
64 x 8, 1.13x at 32 x 16, 0.83x and 0.90x on the stride-2 layers. With lanes, ResNet-20 no longer runs strips.
Then lanes took the 32-wide layers and the first layer too, so that ResNet-20 compiles two algorithms
(lanes, and gemm for its 1x1 shortcuts) instead of four (blocked and wide besides): same benchmark, one
thread, 5 rounds, loaded machine, forward + input gradient + weight gradient at 16 x 32: blocked 36.5 ms,
lanes 36.0 ms (1.05x, 0.89x, 1.07x blocked's time by pass); the first layer (3 -> 16, 32 wide; forward and
weight gradient, a first layer needs no input gradient): wide 12.9 ms, lanes 12.7 ms (blocked 9.2 ms). The
whole step (benchmarks/blocked_step.py --setting LANES_WIDEST=32,BLOCKED_TAPS=27, 11 rounds): 0.98x the time
at one thread, 0.97x at two; the cold first step, alternating trees (benchmarks/cold_start.py --first-step, 2
rounds, load 2.3-3.1): 36.0-36.3 against 39.5-44.3 CPU s for the whole run. The 1x1 shortcuts stay gemm's:
lanes takes 2.2x gemm's time on them. With no layer left to it, blocked (and its settings BLOCKED_WIDEST and
BLOCKED_GRADIENT_NARROWEST) was removed; its thresholds for the narrow layers are lanes' (LANES_*), and lanes
reads stride-2 positions straight from a padded copy, without blocked's phase planes (benchmarks/NOTES.md).

A plan also sizes the buffers of its algorithm (each module's `buffers`) for the thread count: each is a
named scratch array; the scratch slot it borrows is shared between algorithms (a Winograd layer's patches
and a wide layer's unrolled rows use the same "col" memory), so a model holds one of each slot at a time.

Plans are remembered: a training step asks for the same few plans on every call, and working one out (the
choice, the buffers' sizes) cost ~10 us a call, more than a small layer's Python everywhere else. The key
is every argument, the thread count and the settings the choice and the buffers' sizes read (SETTINGS:
tests and benchmarks change them at run time); at most PLANS_REMEMBERED plans, the least recently used
forgotten first. A Plan is immutable, so threads share them.
"""
import functools
import operator
import sys
from typing import NamedTuple

import numpy as np

from ..threads import num_threads
from . import (blocks, depthwise, direct, flat, gemm, lanes, packed, packed_windows, pointwise_tiles, pointwise_weight,
               row_lanes, shift, strips, subsampled, wide, winograd, winograd4, winograd4_weight, winograd_weight)

PASSES = ("forward", "backward_input", "backward_weight")

WINOGRAD_CHANNELS = 32
WINOGRAD_WORK = 672  # min(C, D) x output width
WINOGRAD4_CHANNELS = 128  # F(4x4, 3x3) instead of F(2x2) for Winograd layers with at least this many channels,
WINOGRAD4_WIDE_CHANNELS = 64  # ... or at least this many and outputs
WINOGRAD4_WIDE = 56  # ... at least this wide; never outputs narrower than
WINOGRAD4_NARROWEST = 7  # ... this (a 4x4 tile computes 16 outputs for 2x2 or 4 for 1x1 layers)
WINOGRAD4_WEIGHT_CHANNELS = 32  # the weight gradient by F(4x4, 3x3) for Winograd layers with this many channels
SHIFT_CHANNELS = 16  # shift's products are this deep (channels per group, in and out); below, wide
SHIFT_WEIGHT_CHANNELS = 32  # shift's weight gradient up to this many channels per group, wide above
FLAT_CHANNELS = 8  # flat's forward and weight gradient for at most this many output channels (one group)
FLAT_TAPS = 75  # ... and at most this many taps a filter, C*KH*KW
STRIPS_WASTE = 1.3  # strips instead of wide when the padded width is at least this many output widths
STRIPS_NARROW = 16  # 3x3 layers short of Winograd with 16+ channels: strips up to this output width,
STRIPS_NARROW_WEIGHT = 32  # ... and their weight gradient up to this one
LANES_CHANNELS = 16  # lanes (direct, in registers): layers with at least this many output channels,
LANES_MOST_CHANNELS = 64  # ... at most this many in and out,
LANES_TAPS = 27  # ... at least this many taps a filter (C*3*3: 3 input channels),
LANES_WIDEST = 32  # ... outputs at most this wide (ResNet-20's 32, 16, 8), every pass
LANES_LARGE_CHANNELS = 16  # 'lanes' for the forward and weight gradient of filters larger than 3x3 with 16 up to
                           # this many output channels (LeNet-5's second layer, 5x5 6 -> 16; see _lanes_large)
ROW_LANES_MOST_CHANNELS = 8  # 'row_lanes' for the input gradient of those layers with at most this many inputs
POINTWISE_WEIGHT_MOST_POSITIONS = 196  # 'pointwise_weight' for 1x1 weight gradients on maps up to 14x14
POINTWISE_TILES = True  # 'pointwise_tiles' for float32 1x1 forward passes and input gradients, where ...
POINTWISE_TILES_MOST_OVERLAP = 1 / 64  # ... the positions its last vector sums again are at most this share
SUBSAMPLED = True  # 'subsampled' for unpadded strided 1x1 layers (False: 'gemm')
PLANS_REMEMBERED = 1024  # a ResNet-50's training needs ~150 (53 convolutions, 3 passes)


class Algorithm(NamedTuple):
    """One algorithm: the module that runs it (buffers and passes) and whether it applies to a pass."""
    name: str
    module: object
    applies: object  # applies(pass_, convolution) -> bool


ALGORITHMS = {algorithm.name: algorithm for algorithm in (
    Algorithm("depthwise3x3", depthwise, depthwise.applies),
    Algorithm("direct", direct, direct.applies),
    Algorithm("pointwise", gemm, gemm.applies_pointwise),
    Algorithm("pointwise_tiles", pointwise_tiles, pointwise_tiles.applies),
    Algorithm("pointwise_weight", pointwise_weight, pointwise_weight.applies),
    Algorithm("winograd", winograd, winograd.applies),
    Algorithm("winograd4", winograd4, winograd4.applies),
    Algorithm("winograd_weight", winograd_weight, winograd_weight.applies),
    Algorithm("winograd4_weight", winograd4_weight, winograd4_weight.applies),
    Algorithm("shift", shift, shift.applies),
    Algorithm("flat", flat, flat.applies),
    Algorithm("wide", wide, wide.applies),
    Algorithm("strips", strips, strips.applies),
    Algorithm("subsampled", subsampled, subsampled.applies),
    Algorithm("gemm", gemm, gemm.applies),
    Algorithm("lanes", lanes, lanes.applies),
    Algorithm("row_lanes", row_lanes, row_lanes.applies),
    Algorithm("packed", packed, packed.applies),  # never chosen here: nn.infer's 1x1 layers (dispatch.py)
    Algorithm("packed_windows", packed_windows, packed_windows.applies),  # never chosen here: nn.infer's (dispatch.py)
)}


class Convolution(NamedTuple):
    """One convolution's geometry: input (N, C, H, W), weight (D, C/groups, KH, KW) and hyper-parameters."""
    input_shape: tuple
    weight_shape: tuple
    stride_h: int = 1
    stride_w: int = 1
    padding_h: int = 0
    padding_w: int = 0
    dilation_h: int = 1
    dilation_w: int = 1
    groups: int = 1

    @property
    def hyper(self):
        """(stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups), the kernels' order."""
        return self[2:]

    @property
    def output_shape(self):
        N, _, H, W = self.input_shape
        D, _, KH, KW = self.weight_shape
        return (N, D, (H + 2 * self.padding_h - self.dilation_h * (KH - 1) - 1) // self.stride_h + 1,
                (W + 2 * self.padding_w - self.dilation_w * (KW - 1) - 1) // self.stride_w + 1)


class Buffer(NamedTuple):
    """One scratch array of a plan: what it holds, the scratch slot it borrows, its shape and dtype."""
    name: str
    slot: str
    shape: tuple
    dtype: np.dtype

    @property
    def nbytes(self):
        size = 1
        for extent in self.shape:
            size *= extent
        return size * self.dtype.itemsize


class Plan(NamedTuple):
    """What runs for one convolution and pass: the algorithm and its buffers."""
    pass_: str
    algorithm: str
    convolution: Convolution
    buffers: tuple

    @property
    def module(self):
        return ALGORITHMS[self.algorithm].module

    @property
    def nbytes(self):
        return sum(buffer.nbytes for buffer in self.buffers)


def _unrolled(convolution):
    """'strips' or 'wide' for a stride-1 layer that unrolls: wide's products are Wp/OW times larger."""
    padded_w, out_w = convolution.input_shape[3] + 2 * convolution.padding_w, convolution.output_shape[3]
    return "strips" if padded_w >= STRIPS_WASTE * out_w else "wide"


def _direct(pass_, convolution):
    """'lanes' for a narrow layer (ungrouped, undilated, 3x3, stride 1 or 2 alike, short of Winograd, within
    LANES_*); None for any other (see the module docstring)."""
    D, Cg, KH, KW = convolution.weight_shape
    out_w = convolution.output_shape[3]
    if not (convolution.groups == 1 and convolution.dilation_h == convolution.dilation_w == 1
            and convolution.stride_h == convolution.stride_w and convolution.stride_h in (1, 2)
            and KH == KW == 3 and LANES_CHANNELS <= D <= LANES_MOST_CHANNELS
            and Cg <= LANES_MOST_CHANNELS and Cg * KH * KW >= LANES_TAPS
            and out_w <= LANES_WIDEST):
        return None
    channels = min(D, Cg)
    if convolution.stride_h == 1 and channels >= WINOGRAD_CHANNELS and channels * out_w >= WINOGRAD_WORK:
        return None  # a Winograd layer
    return "lanes"


def _winograd4(convolution, channels, out_w):
    """True for the Winograd layers whose forward and input gradient run F(4x4, 3x3) (winograd4.py): at least
    WINOGRAD4_CHANNELS channels, or WINOGRAD4_WIDE_CHANNELS with outputs at least WINOGRAD4_WIDE wide, and
    outputs at least WINOGRAD4_NARROWEST wide (see the module docstring). Not the batch: the JIT warm-up plans
    a model's kernels for one image."""
    return out_w >= WINOGRAD4_NARROWEST and (
        channels >= WINOGRAD4_CHANNELS or (channels >= WINOGRAD4_WIDE_CHANNELS and out_w >= WINOGRAD4_WIDE))


def choose(pass_, convolution, dtype=np.float32):
    """The algorithm the plan runs for one pass of a convolution of `dtype` (see the module docstring)."""
    D, Cg, KH, KW = convolution.weight_shape
    groups = convolution.groups
    if groups > 1 and Cg == 1:
        return "depthwise3x3" if depthwise.applies(pass_, convolution) else "direct"
    if gemm.applies_pointwise(pass_, convolution):
        positions = convolution.input_shape[2] * convolution.input_shape[3]
        if pass_ == "backward_weight" and positions <= POINTWISE_WEIGHT_MOST_POSITIONS:
            return "pointwise_weight"
        return "pointwise_tiles" if _pointwise_tiles(pass_, convolution, dtype) else "pointwise"
    direct_algorithm = _direct(pass_, convolution)
    if direct_algorithm:
        return direct_algorithm
    if _lanes_large(pass_, convolution):
        return "lanes"
    if _row_lanes(pass_, convolution):
        return "row_lanes"
    if convolution.stride_h == convolution.stride_w == 1:
        if groups == 1 and D <= FLAT_CHANNELS and Cg * KH * KW <= FLAT_TAPS and flat.applies(pass_, convolution):
            return "flat"
        channels = min(D // groups, Cg)
        out_w = convolution.input_shape[3] + 2 * convolution.padding_w - 2  # a 3x3 layer's output width
        winograd_layer = (KH == KW == 3 and convolution.dilation_h == convolution.dilation_w == 1 and groups == 1
                          and channels >= WINOGRAD_CHANNELS and channels * out_w >= WINOGRAD_WORK)
        narrow = (KH == KW == 3 and convolution.dilation_h == convolution.dilation_w == 1 and groups == 1
                  and not winograd_layer and channels >= SHIFT_CHANNELS)  # ResNet-20's layers: 16-64 wide, 8-32 wide
        if narrow and out_w <= (STRIPS_NARROW_WEIGHT if pass_ == "backward_weight" else STRIPS_NARROW):
            return "strips"
        if pass_ == "backward_weight":
            if winograd_layer:
                return "winograd4_weight" if channels >= WINOGRAD4_WEIGHT_CHANNELS else "winograd_weight"
            return "shift" if (winograd_layer or channels >= SHIFT_CHANNELS) and channels <= SHIFT_WEIGHT_CHANNELS \
                else _unrolled(convolution)
        if winograd_layer and winograd.applies(pass_, convolution):
            return "winograd4" if _winograd4(convolution, channels, out_w) else "winograd"
        return "shift" if winograd_layer or channels >= SHIFT_CHANNELS else _unrolled(convolution)
    if SUBSAMPLED and subsampled.applies(pass_, convolution):
        return "subsampled"
    return "gemm"


def _pointwise_tiles(pass_, convolution, dtype):
    """True for the 1x1 stride-1 passes 'pointwise_tiles' runs in place of BLAS (while POINTWISE_TILES): float32
    (a wide float64 vector takes two registers: 0.8x BLAS), forward passes with at most as many output channels as
    inputs, every input gradient, on maps whose last vector of 16 positions overlaps the one before by at most
    POINTWISE_TILES_MOST_OVERLAP of the positions. Against 'pointwise' (alternating rounds, one thread): forward
    passes 16 x 256 -> 64 on 28x28 (the layer set's) 1.14x, 8 x 256 -> 64 on 56x56 1.20x, 8 x 512 -> 128 on 28x28
    1.10x, ResNet-50's reducing layers at batch 1 in the network 1.13-1.18x; input gradients 1.03-1.11x, 1.6-2.2x
    at batch 1 on two threads (BLAS splits only the images). Widening forward passes gain less (8 x 64 -> 256 on
    56x56 1.04x) and lose where a residual epilogue follows (ResNet-50's 64 -> 256 on 56x56 at batch 1: 0.90x):
    they stay BLAS's. On 14x14 maps (196 positions: a last vector for 4) 1024 -> 256 ran 0.92x at batch 1, the
    vector at two thirds of a tile's rate (benchmarks/NOTES.md, section 96)."""
    positions = convolution.input_shape[2] * convolution.input_shape[3]
    overlap = -positions % pointwise_tiles.WIDE_LANES
    D, C = convolution.weight_shape[:2]
    return (POINTWISE_TILES and np.dtype(dtype) == np.float32 and pointwise_tiles.applies(pass_, convolution)
            and (pass_ == "backward_input" or D <= C) and overlap <= POINTWISE_TILES_MOST_OVERLAP * positions)


def applicable(pass_, convolution):
    """The names of the algorithms that can run this pass of this convolution, in ALGORITHMS' order."""
    return [name for name, algorithm in ALGORITHMS.items() if algorithm.applies(pass_, convolution)]


# every module-level setting that choose() or an algorithm's `buffers` reads, directly or through blocks.py's
# helpers, by module: their values are part of a remembered plan's key (a test checks this list against the
# modules' upper-case numbers)
SETTINGS = (
    (sys.modules[__name__], ("WINOGRAD_CHANNELS", "WINOGRAD_WORK", "WINOGRAD4_CHANNELS", "WINOGRAD4_WIDE_CHANNELS",
                             "WINOGRAD4_WIDE", "WINOGRAD4_NARROWEST", "WINOGRAD4_WEIGHT_CHANNELS",
                             "SHIFT_CHANNELS", "SHIFT_WEIGHT_CHANNELS",
                             "FLAT_CHANNELS", "FLAT_TAPS", "STRIPS_WASTE",
                             "STRIPS_NARROW", "STRIPS_NARROW_WEIGHT", "LANES_CHANNELS", "LANES_MOST_CHANNELS", "LANES_TAPS",
                             "LANES_WIDEST", "LANES_LARGE_CHANNELS", "ROW_LANES_MOST_CHANNELS",
                             "PREPARED_PACKED", "PACKED_MOST_POSITIONS", "PACKED_MOST_INPUT_CHANNELS",
                             "PREPARED_WINDOWS_POINTWISE",
                             "PREPARED_NARROW_WIDEST", "PREPARED_NARROW_MOST_IMAGES", "PREPARED_PACKED_WINDOWS",
                             "PREPARED_WINOGRAD4", "PREPARED_WINOGRAD4_TILES", "POINTWISE_WEIGHT_MOST_POSITIONS",
                             "POINTWISE_TILES", "POINTWISE_TILES_MOST_OVERLAP", "SUBSAMPLED")),
    (blocks, ("CACHE_BYTES", "WEIGHT_CHUNKS", "PARTIAL_BYTES", "CHUNKS_PER_THREAD", "MIN_PART_CHANNELS",
              "block_rows", "max_chunks", "channel_parts")),
    (flat, ("ROWS_FROM", "LANES", "max_chunks")),
    (gemm, ("block_rows", "channel_parts", "max_chunks", "FORWARD_COLUMNS")),
    (shift, ("max_chunks",)),
    (strips, ("STRIP", "block_rows", "max_chunks")),
    (wide, ("block_rows", "max_chunks")),
    (winograd, ("block_rows", "channel_parts", "max_chunks")),
    (winograd4, ("BLOCK_TILES", "ROWS_NOT_SLICES_MOST_CHANNELS", "block_rows", "channel_parts", "max_chunks",
                 "balanced_rows")),
    (winograd_weight, ("BLOCK_BYTES", "CHUNKS_PER_THREAD")),
    (winograd4_weight, ("BLOCK_BYTES", "SLAB_BYTES", "CHUNKS_PER_THREAD")),
    (lanes, ("CHANNELS", "POSITIONS", "WEIGHT_CHANNELS", "WEIGHT_POSITIONS", "SLACK", "UNUSED", "max_chunks")),
    (row_lanes, ("BLOCK_CHANNELS", "LANES", "max_chunks")),
    (pointwise_weight, ("PRODUCT_DEPTH", "max_chunks")),
    (pointwise_tiles, ("ROWS", "WIDE_LANES")),  # its pieces() are worked out per call
    (packed, ("PANEL", "POSITIONS", "LANES", "DEPTH", "PACK_BYTES", "MIN_POSITIONS", "GROUP_BYTES", "TASKS_PER_THREAD",
              "CLAIMED_SLICES")),
    (packed_windows, ("PANEL", "POSITIONS", "LANES", "PACK_BYTES", "MIN_POSITIONS", "TASKS_PER_THREAD",
                      "CLAIMED_SLICES", "PANEL_GROUP", "GROUP_IMAGE_BYTES")),
)
_SETTING_READERS = tuple((vars(module), operator.itemgetter(*names)) for module, names in SETTINGS)


def _settings():
    """The current values of SETTINGS (one C call per module: this runs on every plan())."""
    return tuple([read(namespace) for namespace, read in _SETTING_READERS])


def plan(pass_, input_shape, weight_shape, stride_h=1, stride_w=1, padding_h=0, padding_w=0, dilation_h=1,
         dilation_w=1, groups=1, dtype=np.float32, algorithm=None, threads=None):
    """The Plan for one pass ('forward', 'backward_input' or 'backward_weight') of the convolution of an
    input (N, C, H, W) with a weight (D, C/groups, KH, KW): the chosen algorithm, or `algorithm` when given
    (a ValueError if it does not apply), and its buffers for `threads` (default: Numba's thread count).
    Remembered per arguments, thread count and settings (see the module docstring)."""
    threads = num_threads() if threads is None else threads
    return _remembered(pass_, tuple(input_shape), tuple(weight_shape), stride_h, stride_w, padding_h, padding_w,
                       dilation_h, dilation_w, groups, dtype, algorithm, threads,
                       _settings())


def forget_plans():
    """Forget every remembered plan (they are worked out again when next asked for)."""
    _remembered.cache_clear()
    _prepared_remembered.cache_clear()


@functools.lru_cache(maxsize=PLANS_REMEMBERED, typed=True)
def _remembered(pass_, input_shape, weight_shape, stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w,
                groups, dtype, algorithm, threads, settings):
    """plan()'s work; `settings` (the values of SETTINGS) is only part of the key. Errors are not
    remembered."""
    return _worked_out(pass_, input_shape, weight_shape, stride_h, stride_w, padding_h, padding_w, dilation_h,
                       dilation_w, groups, dtype, algorithm, threads)


def _worked_out(pass_, input_shape, weight_shape, stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w,
                groups, dtype, algorithm, threads):
    if pass_ not in PASSES:
        raise ValueError(f"pass_ must be one of {', '.join(PASSES)}, got {pass_!r}")
    convolution = Convolution(tuple(input_shape), tuple(weight_shape), stride_h, stride_w, padding_h, padding_w,
                              dilation_h, dilation_w, groups)
    _check_geometry(convolution)
    if algorithm is None:
        algorithm = choose(pass_, convolution, dtype)
    elif algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
    elif not ALGORITHMS[algorithm].applies(pass_, convolution):
        raise ValueError(f"algorithm {algorithm!r} does not apply to the {pass_} pass of {convolution}")
    dtype = np.dtype(dtype)
    buffers = tuple(Buffer(name, slot, shape, dtype) for name, slot, shape
                    in ALGORITHMS[algorithm].module.buffers(pass_, convolution, dtype.itemsize, threads))
    return Plan(pass_, algorithm, convolution, buffers)


def _check_geometry(convolution):
    """A ValueError naming what does not fit: 4-D shapes, input channels = the weight's x groups, output channels
    a multiple of the groups, strides and dilations from 1, paddings from 0, and an output of at least one pixel.
    (The public kernels are called with arrays whose shapes no one else has checked; the plan remembers a
    geometry that passed, so this runs once per geometry.)"""
    input_shape, weight_shape = convolution.input_shape, convolution.weight_shape
    if len(input_shape) != 4 or len(weight_shape) != 4:
        raise ValueError(f"input must be (N, C, H, W) and weight (D, C/groups, kh, kw), got shapes {input_shape} "
                         f"and {weight_shape}")
    for name, value, least in zip(("stride_h", "stride_w", "padding_h", "padding_w", "dilation_h", "dilation_w",
                                   "groups"), convolution.hyper, (1, 1, 0, 0, 1, 1, 1)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < least:
            raise ValueError(f"{name} must be an integer of at least {least}, got {value!r}")
    D, Cg = weight_shape[:2]
    if input_shape[1] != Cg * convolution.groups or D % convolution.groups or min(weight_shape) < 1:
        raise ValueError(f"weight {weight_shape} does not fit input {input_shape} with groups={convolution.groups}: "
                         f"C must be C/groups x groups and D a multiple of groups")
    if min(convolution.output_shape[2:]) < 1:
        raise ValueError(f"the {weight_shape[2]}x{weight_shape[3]} kernel (dilation {convolution.dilation_h}, "
                         f"{convolution.dilation_w}) does not fit input {input_shape} padded by "
                         f"({convolution.padding_h}, {convolution.padding_w})")


def _lanes_large(pass_, convolution):
    """True for the forward and weight gradient of an ungrouped, undilated stride-1 layer whose filter is over 3
    taps both ways, with 16 to LANES_LARGE_CHANNELS output channels (whole 16-channel blocks) and outputs at most
    LANES_WIDEST wide: LeNet-5's second layer (5x5, 6 -> 16 on 14x14). There lanes ran the forward and the
    weight gradient 1.2-1.3x faster than strips (one and two threads, alternating rounds; benchmarks/NOTES.md,
    "LeNet-5's whole process, round four"); its input gradient (the transposed convolution by phases) ran at
    a third of strips' speed, so that pass keeps strips."""
    D, _, KH, KW = convolution.weight_shape
    return (pass_ != "backward_input" and convolution.groups == 1 and min(KH, KW) > 3
            and convolution.stride_h == convolution.stride_w == 1
            and convolution.dilation_h == convolution.dilation_w == 1
            and D % 16 == 0 and 16 <= D <= LANES_LARGE_CHANNELS and convolution.output_shape[3] <= LANES_WIDEST)


def _row_lanes(pass_, convolution):
    """True for the input gradient of the layers whose other passes _lanes_large gives lanes, with at most
    ROW_LANES_MOST_CHANNELS input channels, where row_lanes applies (LeNet-5's second layer: 6 inputs, 14 wide).
    There lanes' transposed convolution would hold 6 input channels in 16 lanes, and strips runs one matrix
    product 16 deep per image and a scatter; row_lanes sums 8 positions of a row in the lanes (benchmarks/NOTES.md,
    section 65)."""
    return (pass_ == "backward_input" and _lanes_large("forward", convolution)
            and convolution.input_shape[1] <= ROW_LANES_MOST_CHANNELS and row_lanes.applies(pass_, convolution))


# Prepared forward passes (nn.infer, through dispatch.conv2d_forward_prepared) keep what depends on the weight
# alone from call to call, so they may run algorithms that choose() does not offer training: the choice is here.
PREPARED_PACKED = True  # 1x1 layers with the weight packed once (packed.py) ...
PACKED_MOST_POSITIONS = 64  # ... with outputs of at most this many positions an image
PACKED_MOST_INPUT_CHANNELS = 2048  # ... and at most this many input channels
PREPARED_WINDOWS_POINTWISE = True  # of those, the ones packed_windows' 32-channel panels fit better: packed_windows
PREPARED_NARROW_WIDEST = 7  # Winograd's 3x3 layers with outputs at most this wide run without Winograd ...
PREPARED_NARROW_MOST_IMAGES = 1  # ... in batches of at most this many images (F(4x4) in larger ones)
PREPARED_PACKED_WINDOWS = True  # the layers choose() gives 'gemm' with windows over one pixel: 'packed_windows'
PREPARED_WINOGRAD4 = True  # the layers choose() gives F(4x4) keep it, with its transformed filters kept, ...
PREPARED_WINOGRAD4_TILES = 32  # ... where the batch has at least this many 4x4 tiles (else F(2x2)), narrow aside


def choose_prepared(convolution, dtype=np.float32):
    """The algorithm of a prepared forward pass:
    - 'packed' for 1x1 layers it applies to with outputs of at most PACKED_MOST_POSITIONS positions an image and
      at most PACKED_MOST_INPUT_CHANNELS inputs, where it measured faster than the BLAS path, which packs the
      whole weight again for every image (ResNet-50's 7x7 layers 512 -> 2048, 1024 -> 2048 stride 2 and, since
      its micro-kernel prefetches the weights, 2048 -> 512; not the larger maps, where it runs as fast as
      OpenBLAS: benchmarks/NOTES.md, sections 88 and 92), or instead 'packed_windows' where _windows_fit_better;
    - 'packed_windows' ('strips' while PREPARED_PACKED_WINDOWS is off) for the layers choose() gives Winograd
      whose outputs are at most PREPARED_NARROW_WIDEST wide, where Winograd's 4x4 tiles compute 8x8 outputs for
      7x7 (ResNet-50's 512-channel 3x3 layers), unless choose() gives F(4x4) and the batch has more than
      PREPARED_NARROW_MOST_IMAGES images: there F(4x4) ran 1.4x strips at 2 images, 2.6x at 8, 0.93x at 1,
      whose few tiles leave it reading the 4x larger transformed filters for little work; packed_windows ran
      1.07-1.14x strips on such layers (512, 256 and 96 channels, 1 and 4 images; one thread; 1.12x on two;
      benchmarks/NOTES.md, section 67);
    - 'packed_windows' for the ungrouped layers choose() gives 'gemm' whose windows are over one pixel
      (ResNet-50's 7x7 stem and 3x3 stride-2 layers: 1.07-1.21x gemm at batch 1 and 8, one thread;
      benchmarks/NOTES.md, section 61) while PREPARED_PACKED_WINDOWS;
    - F(4x4) ('winograd4') where choose() gives it, its transformed filters kept like F(2x2)'s, while
      PREPARED_WINOGRAD4, and the batch has at least PREPARED_WINOGRAD4_TILES tiles of 4x4 outputs, else
      F(2x2): ResNet-50's 256-channel layer on 14x14 at batch 1 (16 tiles) ran 0.96x F(2x2) (0.82x on two
      threads), reading 2.25x more transformed filters for few tiles; 1.20x at batch 2 (32 tiles), 1.13-1.35x
      on the wider layers at batch 1 (49 tiles and more; one thread, benchmarks/NOTES.md, section 67);
    - else choose()'s, but 'gemm' for choose()'s 'subsampled' (which splits only the images between threads)."""
    N, C, _, _ = convolution.input_shape
    _, _, OH, OW = convolution.output_shape
    if (PREPARED_PACKED and packed.applies("forward", convolution) and OH * OW <= PACKED_MOST_POSITIONS
            and C <= PACKED_MOST_INPUT_CHANNELS):
        return "packed_windows" if _windows_fit_better(OH * OW) else "packed"
    algorithm = choose("forward", convolution, dtype)
    if algorithm == "subsampled":  # it splits the batch's images between the threads: nn.infer's batch of one
        algorithm = "gemm"         # image would run on one thread, where gemm splits rows and channels too
    if algorithm == "winograd4" and not PREPARED_WINOGRAD4:
        algorithm = "winograd"
    if (algorithm in ("winograd", "winograd4") and OW <= PREPARED_NARROW_WIDEST
            and (algorithm == "winograd" or N <= PREPARED_NARROW_MOST_IMAGES)):
        return "packed_windows" if PREPARED_PACKED_WINDOWS else "strips"
    if algorithm == "winograd4" and N * ((OH + 3) // 4) * ((OW + 3) // 4) < PREPARED_WINOGRAD4_TILES:
        return "winograd"
    _, _, KH, KW = convolution.weight_shape
    if (algorithm == "gemm" and PREPARED_PACKED_WINDOWS and KH * KW > 1
            and packed_windows.applies("forward", convolution)):
        return "packed_windows"
    return algorithm


def _windows_fit_better(positions):
    """Whether a 1x1 layer 'packed' would run on, with this many output positions an image, runs faster by
    packed_windows: with its 32-channel panels (two 512-bit vectors: AVX-512), where its sub-blocks of POSITIONS
    positions pad fewer than 'packed''s vectors of 8, from 49 positions up (ResNet-50's 7x7 1x1 layers: 49 sums
    against 56; alone, weights in the cache, 1.11-1.14x one thread, 1.06-1.07x two; in the network, one thread,
    1024 -> 2048 stride 2 1.08-1.10x, 512 -> 2048 1.10x, 2048 -> 512 1.05x, two threads within the noise; on 8x8,
    70 against 64, 0.85x alone; benchmarks/NOTES.md, section 93). With 16-channel panels (AVX2) it ran
    0.59-0.89x 'packed' on such layers (section 81)."""
    fits = (-(-positions // packed_windows.POSITIONS) * packed_windows.POSITIONS
            < -(-positions // packed.LANES) * packed.LANES)  # 'packed' pads to whole vectors
    return PREPARED_WINDOWS_POINTWISE and packed_windows.PANEL >= 32 and positions >= 49 and fits


def prepared_plan(input_shape, weight_shape, stride_h=1, stride_w=1, padding_h=0, padding_w=0, dilation_h=1,
                  dilation_w=1, groups=1, dtype=np.float32, threads=None):
    """The Plan of a prepared forward pass (plan()'s arguments): choose_prepared()'s algorithm, remembered as
    plan() remembers its own (settings included)."""
    threads = num_threads() if threads is None else threads
    args = (tuple(input_shape), tuple(weight_shape), stride_h, stride_w, padding_h, padding_w, dilation_h,
            dilation_w, groups, dtype)
    return _prepared_remembered(*args, threads, _settings())


@functools.lru_cache(maxsize=PLANS_REMEMBERED, typed=True)
def _prepared_remembered(input_shape, weight_shape, stride_h, stride_w, padding_h, padding_w, dilation_h,
                         dilation_w, groups, dtype, threads, settings):
    convolution = Convolution(input_shape, weight_shape, stride_h, stride_w, padding_h, padding_w, dilation_h,
                              dilation_w, groups)
    return plan("forward", input_shape, weight_shape, stride_h, stride_w, padding_h, padding_w, dilation_h,
                dilation_w, groups, dtype, choose_prepared(convolution, dtype), threads)

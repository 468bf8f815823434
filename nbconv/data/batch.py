"""Training batches assembled in one compiled pass: gather, random shift (the same as a random crop of the
zero-padded image), horizontal flip, per-channel normalisation.

The same arithmetic as `nbconv.train.shift_augment` followed by `nbconv.train.normalize` (a test holds
them equal, bit for bit), without the numpy intermediates: ~10x faster, ~0.1 ms of a LeNet-5 step.
"""
import functools

import numpy as np
from numba import njit


# What _shifted_batch returns: the batch is written, or which argument is out of range (nothing written)
ASSEMBLED, CHOSEN_OUTSIDE, OFFSETS_OUTSIDE = 0, 1, 2


# the spans' flags (nogil, error_model), so that the min and max overloads it calls are compiled once a process
# for both: Numba compiles an overload anew for each set of flags that calls it, and keeps none on disk
@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def _shifted_batch(images, chosen, offsets, flips, max_shift, scale, shift, output):
    """output[k, c, h, w] = images[chosen[k], c, h + dy - s, x + dx - s] * scale[c] - shift[c], with (dy, dx) =
    offsets[k], s = max_shift and x = W - 1 - w when flips[k] (else w); pixels that come from outside the
    image are 0 before normalising. Returns ASSEMBLED, or CHOSEN_OUTSIDE / OFFSETS_OUTSIDE before anything is
    read when an index is not an image's or an offset not in [0, 2 * max_shift] (checked here: numpy's min and
    max of both cost ~20 us a batch)."""
    C, H, W = images.shape[1], images.shape[2], images.shape[3]
    for k in range(chosen.shape[0]):
        if chosen[k] < 0 or chosen[k] >= images.shape[0]:
            return CHOSEN_OUTSIDE
        if offsets[k, 0] < 0 or offsets[k, 0] > 2 * max_shift or offsets[k, 1] < 0 or offsets[k, 1] > 2 * max_shift:
            return OFFSETS_OUTSIDE
    for k in range(chosen.shape[0]):
        image = images[chosen[k]]
        dy, dx = offsets[k, 0] - max_shift, offsets[k, 1] - max_shift
        flip = flips[k]
        # the output columns that read inside the image, [low, high); the rest is padding
        low, high = (max(0, dx), min(W, W + dx)) if flip else (max(0, -dx), min(W, W - dx))
        low = min(low, W)  # a shift wider than the image: every column is padding
        high = max(high, low)
        start = W - high + dx if flip else low + dx  # the first source column read
        count = high - low
        for c in range(C):
            plane, target = image[c], output[k, c]
            channel_scale, channel_shift = scale[c], shift[c]
            zero = -channel_shift
            for h in range(H):
                source_h = h + dy
                row = target[h]
                if source_h < 0 or source_h >= H:
                    row[:] = zero
                    continue
                row[:low] = zero
                row[high:] = zero
                # slices, so that every index below is provably >= 0 (contiguous loads, a vectorised loop)
                inside, source = row[low:high], plane[source_h, start:start + count]
                if flip:
                    for j in range(count):
                        inside[j] = row.dtype.type(source[count - 1 - j]) * channel_scale - channel_shift
                else:
                    for j in range(count):
                        inside[j] = row.dtype.type(source[j]) * channel_scale - channel_shift
    return ASSEMBLED


def channel_constants(mean, std, channels, dtype=np.float32):
    """(scale, shift) arrays (channels,) of `dtype` with pixel * scale - shift = (pixel/255 - mean) / std;
    mean and std are numbers or one per channel. Read-only arrays, computed once per set of arguments."""
    if type(mean) is float and type(std) is float:  # the one-channel datasets' numbers: the key without numpy
        return _channel_constants((mean,), (std,), int(channels), np.dtype(dtype).str)
    key = (tuple(np.ravel(mean).tolist()), tuple(np.ravel(std).tolist()), int(channels), np.dtype(dtype).str)
    return _channel_constants(*key)


@functools.lru_cache(maxsize=64)
def _channel_constants(mean, std, channels, dtype):
    mean = np.broadcast_to(np.asarray(mean, np.float64).reshape(-1), (channels,)) if np.size(mean) == 1 else \
        np.asarray(mean, np.float64)
    std = np.broadcast_to(np.asarray(std, np.float64).reshape(-1), (channels,)) if np.size(std) == 1 else \
        np.asarray(std, np.float64)
    if mean.shape != (channels,) or std.shape != (channels,):
        raise ValueError(f"mean and std must be numbers or {channels} values (one per channel), got "
                         f"{mean.size} and {std.size}")
    if not np.all(np.isfinite(mean)) or not np.all(std > 0) or not np.all(np.isfinite(std)):
        raise ValueError(f"std must be positive and mean and std finite, got mean {mean.tolist()}, std {std.tolist()}")
    dtype = np.dtype(dtype).type
    scale = np.array([dtype(1.0 / (255.0 * s)) for s in std], dtype)
    shift = np.array([dtype(m / s) for m, s in zip(mean, std)], dtype)
    scale.flags.writeable = shift.flags.writeable = False
    return scale, shift


def shifted_batch(images, chosen, offsets, max_shift, mean, std, dtype=np.float32, flips=None):
    """(len(chosen), C, H, W) `dtype` batch: uint8 images (N, C, H, W) (or (N, H, W): C = 1) picked by
    `chosen`, each moved by offsets[k] - max_shift pixels (offsets (len(chosen), 2) in [0, 2*max_shift];
    zero-filled), mirrored left to right where flips[k] (default: none), then (pixel/255 - mean)/std per
    channel (mean, std: numbers or one per channel)."""
    images = np.ascontiguousarray(images)
    if images.ndim == 3:
        images = images.reshape(images.shape[0], 1, images.shape[1], images.shape[2])
    if images.ndim != 4 or images.dtype != np.uint8:
        raise TypeError(f"images must be uint8 (N, C, H, W) or (N, H, W), got {images.dtype} {images.shape}")
    chosen = np.ascontiguousarray(chosen, dtype=np.int64)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64).reshape(len(chosen), 2)
    flips = np.zeros(len(chosen), np.bool_) if flips is None else np.ascontiguousarray(flips, np.bool_).reshape(-1)
    if len(flips) != len(chosen):
        raise ValueError(f"flips must hold one flag per chosen image ({len(chosen)}), got {len(flips)}")
    scale, shift = channel_constants(mean, std, images.shape[1], dtype)
    output = np.empty((len(chosen),) + images.shape[1:], scale.dtype)
    outcome = _shifted_batch(images, chosen, offsets, flips, int(max_shift), scale, shift, output)
    if outcome == CHOSEN_OUTSIDE:
        raise IndexError(f"chosen must index the {len(images)} images, got values in [{chosen.min()}, {chosen.max()}]")
    if outcome == OFFSETS_OUTSIDE:
        raise ValueError(f"offsets must be in [0, {2 * max_shift}] (2 * max_shift), got values in "
                         f"[{offsets.min()}, {offsets.max()}]")
    return output

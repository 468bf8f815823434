"""The element-wise CPU kernels called in place (the output is an input) give the bits they give into a new
array: they read and write one array there, a loop of its own (activation.py says why)."""
import numpy as np
import pytest

from nbconv.kernels.cpu import activation, combine, scale_shift

SPECIAL = [np.nan, np.inf, -np.inf, -0.0, 0.0, 6.0, -6.0, 1e-40]


def _values(rng, size, dtype):
    values = (rng.standard_normal(size) * 5).astype(dtype)
    values[:len(SPECIAL)] = SPECIAL
    return values


def _by_parts(span, parts, *args):
    """Every part of a span kernel in turn, as the kernel threads would run them."""
    for part in range(parts):
        span(part, parts, *args)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("parts", [1, 3])
@pytest.mark.parametrize("name", ["relu", "relu6", "leaky_relu"])
def test_activations_in_place_match_a_new_array(name, parts, dtype, rng):
    span = getattr(activation, f"{name}_forward_span")
    extra = (dtype(0.125),) if name == "leaky_relu" else ()
    x = _values(rng, 1001, dtype)
    apart = np.empty_like(x)
    _by_parts(span, parts, x, apart, *extra)
    in_place = x.copy()
    _by_parts(span, parts, in_place, in_place, *extra)
    np.testing.assert_array_equal(in_place, apart)
    assert np.array_equal(np.signbit(in_place), np.signbit(apart))  # -0 becomes the same zero either way
    if name == "relu":
        np.testing.assert_array_equal(apart, np.where(x > 0, x, 0) + np.where(np.isnan(x), np.nan, 0))


@pytest.mark.parametrize("parts", [1, 3])
def test_add_in_place_on_either_input_matches_a_new_array(parts, rng):
    x, y = _values(rng, 999, np.float32), _values(rng, 999, np.float32)[::-1].copy()
    apart = np.empty_like(x)
    _by_parts(combine.add_forward_span, parts, x, y, apart)
    np.testing.assert_array_equal(apart, x + y)
    on_input, on_other = x.copy(), y.copy()
    _by_parts(combine.add_forward_span, parts, on_input, y, on_input)
    _by_parts(combine.add_forward_span, parts, x, on_other, on_other)
    np.testing.assert_array_equal(on_input, apart)
    np.testing.assert_array_equal(on_other, apart)
    twice = x.copy()  # both inputs and the output one array
    _by_parts(combine.add_forward_span, parts, twice, twice, twice)
    np.testing.assert_array_equal(twice, x + x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("summed", [False, True])
@pytest.mark.parametrize("code", [scale_shift.NO_ACTIVATION, scale_shift.RELU, scale_shift.RELU6])
def test_scale_shift_in_place_and_into_the_residual_match_a_new_array(code, summed, dtype, rng):
    N, C, S = 2, 5, 203
    x = _values(rng, N * C * S, dtype).reshape(N, C, S)
    residual = _values(rng, N * C * S, dtype)[::-1].reshape(N, C, S).copy() if summed else \
        np.empty((0, 0, 0), dtype)
    factors, offsets = (rng.standard_normal(C) * 2).astype(dtype), rng.standard_normal(C).astype(dtype)
    apart = np.empty_like(x)
    scale_shift.scale_shift_forward(x, factors, offsets, residual, apart, code)
    # the definition, value by value: scaled and shifted in the data's type, then the residual, then the activation
    expected = (x * factors[None, :, None]).astype(dtype) + offsets[None, :, None]
    if summed:
        expected = expected + residual
    with np.errstate(invalid="ignore"):
        if code == scale_shift.RELU:
            expected = np.where(expected <= 0, dtype(0), expected)
        elif code == scale_shift.RELU6:
            expected = np.where(expected <= 0, dtype(0), np.where(expected >= 6, dtype(6), expected))
    np.testing.assert_array_equal(apart, expected)
    in_place = x.copy()
    scale_shift.scale_shift_forward(in_place, factors, offsets, residual, in_place, code)
    np.testing.assert_array_equal(in_place, apart)
    if summed:
        into_residual = residual.copy()
        scale_shift.scale_shift_forward(x, factors, offsets, into_residual, into_residual, code)
        np.testing.assert_array_equal(into_residual, apart)
    for empty in (np.empty(0, dtype),):  # no scale and no shift: 1 and 0
        plain = np.empty_like(x)
        scale_shift.scale_shift_forward(x, empty, empty, residual, plain, code)
        again = x.copy()
        scale_shift.scale_shift_forward(again, empty, empty, residual, again, code)
        np.testing.assert_array_equal(again, plain)


@pytest.mark.parametrize("code", [scale_shift.NO_ACTIVATION, scale_shift.RELU, scale_shift.RELU6])
def test_the_convolutions_epilogue_on_part_of_a_row_leaves_the_rest(code, rng):
    """epilogue_span on output[n, d, start:stop] writes those values only, with or without the residual."""
    from numba import njit

    @njit
    def apply(output, scale, shift, residual, code, start, stop):
        for d in range(output.shape[1]):
            scale_shift.epilogue_span(output, 1, d, start, stop, scale, shift, residual, code)

    output = _values(rng, 2 * 3 * 50, np.float32).reshape(2, 3, 50)
    residual = rng.standard_normal(output.shape).astype(np.float32)
    scale, shift = rng.standard_normal(3).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    for added in (residual, np.empty((0, 0, 0), np.float32)):
        done = output.copy()
        apply(done, scale, shift, added, code, 7, 44)
        whole = np.empty_like(output)
        scale_shift.scale_shift_forward(output, scale, shift, added if added.size else added, whole, code)
        np.testing.assert_array_equal(done[1, :, 7:44], whole[1, :, 7:44])
        np.testing.assert_array_equal(done[0], output[0])
        np.testing.assert_array_equal(done[1, :, :7], output[1, :, :7])
        np.testing.assert_array_equal(done[1, :, 44:], output[1, :, 44:])


def _overlapping_pairs(rng, n, dtype):
    """(source, output) views of one buffer that share memory without being the same elements: shifted by
    one value either way, and starting together with other strides."""
    pairs = []
    for make in (lambda b: (b[:n], b[1:n + 1]), lambda b: (b[1:n + 1], b[:n]),
                 lambda b: (b[:n], b[:2 * n:2]), lambda b: (b[:2 * n:2], b[:n]), lambda b: (b[:n], b[n - 1::-1])):
        pairs.append(make(_values(rng, 2 * n + 1, dtype)))
    return pairs


@pytest.mark.parametrize("name", ["relu", "relu6", "leaky_relu"])
def test_activations_read_an_input_that_overlaps_the_output_as_it_was(name, rng):
    """numpy's rule for ufuncs: the result is the one a copy of the input gives, however the two overlap."""
    kernel = getattr(activation, f"{name}_forward")
    extra = (np.float32(0.125),) if name == "leaky_relu" else ()
    for source, output in _overlapping_pairs(rng, 257, np.float32):
        expected = np.empty_like(source)
        kernel(source.copy(), expected, *extra)
        kernel(source, output, *extra)
        np.testing.assert_array_equal(output, expected)


def test_add_reads_inputs_that_overlap_the_output_as_they_were(rng):
    for source, output in _overlapping_pairs(rng, 257, np.float32):
        other = _values(rng, 257, np.float32)
        with np.errstate(invalid="ignore"):  # inf + -inf
            expected = source + other
        combine.add_forward(source, other, output)
        np.testing.assert_array_equal(output, expected)
    for source, output in _overlapping_pairs(rng, 257, np.float32):
        first = _values(rng, 257, np.float32)
        with np.errstate(invalid="ignore"):
            expected = first + source
        combine.add_forward(first, source, output)
        np.testing.assert_array_equal(output, expected)


@pytest.mark.parametrize("role", ["input", "residual"])
def test_scale_shift_reads_arrays_that_overlap_the_output_as_they_were(role, rng):
    N, C, S = 2, 3, 41
    factors, offsets = rng.standard_normal(C).astype(np.float32), rng.standard_normal(C).astype(np.float32)
    for source, output in _overlapping_pairs(rng, N * C * S, np.float32):
        source, output = source.reshape(N, C, S), output.reshape(N, C, S)
        other = _values(rng, N * C * S, np.float32).reshape(N, C, S)
        x, residual = (source, other) if role == "input" else (other, source)
        expected = np.empty_like(x)
        scale_shift.scale_shift_forward(x.copy(), factors, offsets, residual.copy(), expected, scale_shift.RELU)
        scale_shift.scale_shift_forward(x, factors, offsets, residual, output, scale_shift.RELU)
        np.testing.assert_array_equal(output, expected)
    # whole rows apart: output row (0, c) is input row (0, c + 1)
    buffer = _values(rng, (C + 1) * S, np.float32)
    x, output = buffer[:C * S].reshape(1, C, S), buffer[S:].reshape(1, C, S)
    expected = np.empty_like(x)
    empty = np.empty((0, 0, 0), np.float32)
    scale_shift.scale_shift_forward(x.copy(), factors, offsets, empty, expected, scale_shift.RELU6)
    scale_shift.scale_shift_forward(x, factors, offsets, empty, output, scale_shift.RELU6)
    np.testing.assert_array_equal(output, expected)


@pytest.mark.parametrize("name", ["relu", "relu6", "leaky_relu"])
def test_a_span_whose_output_starts_at_its_input_with_other_strides_is_not_run_in_place(name, rng):
    """The span kernels' in-place loop is for the very same elements: an output that starts where its input
    does but steps through memory otherwise reads the input (a sequential read that is right for this one)."""
    span = getattr(activation, f"{name}_forward_span")
    extra = (np.float32(0.125),) if name == "leaky_relu" else ()
    buffer = _values(rng, 2 * 100, np.float32)
    source, output = buffer[::2], buffer[:100]
    expected = np.empty_like(source)
    span(0, 1, source.copy(), expected, *extra)
    span(0, 1, source, output, *extra)
    np.testing.assert_array_equal(output, expected)

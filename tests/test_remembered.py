"""Validation results remembered per set of arguments (nbconv.remembered): the same answers as checking every
time, and a bad argument refused every time, also when an equal-comparing good one was remembered."""
import pytest

from nbconv import functional as F
from nbconv.remembered import remembered, typed_key


def test_remembered_geometry_equals_a_fresh_check_and_is_computed_once():
    calls = []

    @remembered
    def geometry(shape, stride):
        calls.append(shape)
        return F.conv_geometry.__wrapped__(shape, (4, 3, 3, 3), stride, 1, 1, 1)

    first = geometry((2, 3, 9, 7), 2)
    again = geometry((2, 3, 9, 7), 2)
    assert again is first and calls == [(2, 3, 9, 7)]
    assert first == F.conv_geometry.__wrapped__((2, 3, 9, 7), (4, 3, 3, 3), 2, 1, 1, 1)
    assert geometry((2, 3, 9, 8), 2).output_shape == (2, 4, 5, 4) and len(calls) == 2


@pytest.mark.parametrize("stride", [2.0, True, (2.0, 2), (2, True)])
def test_a_value_equal_to_a_remembered_one_but_of_another_type_is_still_checked(stride):
    good = F.conv_geometry((1, 3, 8, 8), (4, 3, 3, 3), 2 if not isinstance(stride, tuple) else (2, 2), 0, 1, 1)
    assert good.stride == (2, 2)
    if stride is True:  # equal to 1, not 2: compare with the stride-1 geometry remembered just before
        F.conv_geometry((1, 3, 8, 8), (4, 3, 3, 3), 1, 0, 1, 1)
    with pytest.raises(TypeError, match="stride"):
        F.conv_geometry((1, 3, 8, 8), (4, 3, 3, 3), stride, 0, 1, 1)


def test_a_bad_call_raises_every_time_and_unhashable_arguments_pass_through():
    for _ in range(2):
        with pytest.raises(ValueError, match="kernel_size"):
            F.pool_geometry((1, 1, 2, 2), 3, None, 0, False)
    assert F.pool_geometry((1, 1, 4, 4), [2, 2], None, 0, False).output_shape == (1, 1, 2, 2)  # a list: not hashable
    with pytest.raises(TypeError):
        typed_key(([1], 2))
    assert typed_key(((2, 2), 1)) != typed_key(((2.0, 2), 1))

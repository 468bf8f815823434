"""Remembering the results of validation functions that a training step asks the same questions every time
(a convolution's geometry for the same shapes and hyper-parameters), so that checks a user needs stay, at
the cost of one dictionary look-up after the first call."""
import functools

MAX_REMEMBERED = 4096  # results per function; past it, the oldest are forgotten all at once (clear)


def typed_key(values):
    """A hashable key for the tuple `values` that tells apart arguments that compare equal but are not the
    same to a check: 2, 2.0 and True, also inside a tuple ((2, 2) and (2.0, 2)). TypeError when a value cannot
    be hashed or nests deeper than a tuple of plain values."""
    types = []
    for value in values:
        kind = type(value)
        if kind is tuple:
            kind = tuple(map(type, value))
            if tuple in kind or list in kind:
                raise TypeError("nested too deep to remember")
        types.append(kind)
    key = (values, tuple(types))
    hash(key)
    return key


def remembered(function):
    """`function`, returning the result it gave before for the same arguments (by typed_key). Its results
    must be immutable and depend on its arguments alone. A call that raises is not remembered (so a bad
    argument raises every time), and arguments that cannot be hashed are passed through every time."""
    results = {}

    @functools.wraps(function)
    def call(*args, **kwargs):
        try:
            key = typed_key(args + tuple(sorted(kwargs.items()))) if kwargs else typed_key(args)
        except TypeError:
            return function(*args, **kwargs)
        result = results.get(key)
        if result is None:
            result = function(*args, **kwargs)
            if len(results) >= MAX_REMEMBERED:
                results.clear()
            results[key] = result
        return result

    call.forget = results.clear
    return call

"""Weight initialisation from a numpy Generator: He (for ReLU nets) and Glorot (for tanh/sigmoid nets)."""
import numpy as np

INITS = ("he", "glorot")


def initial_weight(rng, shape, fan_in, fan_out, method, dtype):
    """He: N(0, 2 / fan_in). Glorot: U(±sqrt(6 / (fan_in + fan_out)))."""
    if method == "he":
        values = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
    elif method == "glorot":
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        values = rng.uniform(-limit, limit, shape)
    else:
        raise ValueError(f"init must be one of {', '.join(INITS)}, got {method!r}")
    return values.astype(dtype)

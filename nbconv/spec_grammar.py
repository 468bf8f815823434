"""The model spec language's layer tokens, in one place: the patterns that parse them (nbconv.models) and
the helpers that print them back (each layer's spec(), nbconv.nn), so that both read the same grammar.
See nbconv.models for the language itself."""
import re

SIZE = r"\d+(?:x\d+)?"
NUMBER = r"-?\d*\.?\d*(?:e-?\d+)?"  # what number() prints for a finite float (the layers check the ranges)
PATTERNS = {
    "conv1d": re.compile(rf"^conv1d(\d+)k(\d+)(?:s(\d+))?(?:p(\d+|same|valid))?(?:d(\d+))?(?:g(\d+))?$"),
    "conv": re.compile(rf"^conv(\d+)k({SIZE})(?:s({SIZE}))?(?:p({SIZE}|same|valid))?(?:d({SIZE}))?(?:g(\d+))?"
                       rf"(nobias)?$"),
    "local": re.compile(rf"^local(\d+)k({SIZE})(?:s({SIZE}))?(?:p({SIZE}))?$"),
    "maxpool": re.compile(rf"^maxpool({SIZE})(?:s({SIZE}))?(?:p({SIZE}))?(ceil)?$"),
    "avgpool": re.compile(rf"^avgpool({SIZE})(?:s({SIZE}))?(?:p({SIZE}))?(ceil)?(nopad)?$"),
    "fc": re.compile(r"^fc(\d+)$"),
    "bn": re.compile(rf"^bn(1d)?(?:eps({NUMBER}))?(?:momentum(none|{NUMBER}))?(noaffine)?$"),
    "adaptivepool": re.compile(r"^adaptive(avg|max)pool((?:\d+|none)(?:x(?:\d+|none))?)$"),  # none: the input's
    "lrn": re.compile(rf"^lrn(\d+)(?:a({NUMBER}))?(?:b({NUMBER}))?(?:k({NUMBER}))?$"),
    "lrelu": re.compile(rf"^lrelu({NUMBER})$"),
    "dropout": re.compile(rf"^dropout({NUMBER})$"),
}


def number(value):
    """A token's float hyper-parameter as the shortest text that reads back as the same float (Python's repr,
    without a trailing '.0' or an exponent's '+'): a checkpoint stores the spec, so the model it rebuilds must
    have the very values saved ('{:g}' kept six digits, and printed 1e-05 where a pattern took no exponent)."""
    text = repr(float(value))
    return (text[:-2] if text.endswith(".0") else text).replace("e+", "e")


def parse_size(text):
    """A size in a token: None, 'same'/'valid', an int, or (height, width) for 'AxB'."""
    if text is None:
        return None
    if text in ("same", "valid"):
        return text
    parts = tuple(int(part) for part in text.split("x"))
    return parts[0] if len(parts) == 1 else parts


def pair(value):
    """(a, b) for a pair given as a tuple or list, (v, v) for a single value."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def token_args(**values):
    """'s2p1'-style suffix for a spec token, leaving out defaults (given as None)."""
    parts = []
    for letter, value in values.items():
        if value is None:
            continue
        value = pair(value) if not isinstance(value, str) else value
        if isinstance(value, tuple) and value[0] == value[1]:
            value = value[0]
        parts.append(f"{letter}{value if not isinstance(value, tuple) else f'{value[0]}x{value[1]}'}")
    return "".join(parts)

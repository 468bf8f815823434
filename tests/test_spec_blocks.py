"""The spec language's blocks (res[...], cat[...]) and the new layer tokens: parse, print, nest, check shapes
at build time; and what a spec may ask for is bounded, with clear errors."""
import numpy as np
import pytest

from nbconv import models, nn

BASIC_BLOCK = "res[conv8k3p1nobias,bn,relu,conv8k3p1nobias,bn],relu"
DOWN_BLOCK = "res[conv16k3s2p1nobias,bn,relu,conv16k3p1nobias,bn|conv16k1s2nobias,bn],relu"
INCEPTION = "cat[conv4k1|conv4k1,relu,conv8k3p1|conv2k1,relu,conv4k5p2|maxpool3s1p1,conv4k1]"


def test_blocks_parse_into_containers_and_print_back():
    spec = f"conv8k3p1,bn,relu,{BASIC_BLOCK},{DOWN_BLOCK},{INCEPTION},gap,flatten,fc10"
    model = models.build(spec, input_shape=(3, 12, 12))
    assert model.spec() == spec
    assert models.build(model.spec(), input_shape=(3, 12, 12)).spec() == spec
    assert [type(layer).__name__ for layer in model.layers][3:6] == ["Residual", "ReLU", "Residual"]
    assert isinstance(model["cat1"], nn.Concat) and len(model["cat1"].branches) == 4
    assert model.output_shape((3, 12, 12)) == (10,)
    state = model.state_dict()
    assert state["res2.shortcut.conv1.weight"].shape == (16, 8, 1, 1)
    assert state["res1.bn2.running_var"].shape == (8,)
    assert state["cat1.branch3.conv2.weight"].shape == (4, 2, 5, 5)
    x = np.random.default_rng(0).standard_normal((2, 3, 12, 12)).astype(np.float32)
    assert model.forward(x).shape == (2, 10)
    assert model.backward(np.ones((2, 10), np.float32)).shape == x.shape


def test_blocks_nest_and_repeat():
    with pytest.raises(ValueError, match="'\\*N' must follow a '\\]' \\(at character 44\\)"):
        models.build("[res[conv4k3p1,relu,cat[conv2k1|res[conv2k1]*0,conv2k1]]]*2", input_shape=(4, 6, 6))
    with pytest.raises(ValueError, match="'relu' cannot open a '\\['"):
        models.build("relu[conv4k1]", input_shape=(4, 6, 6))
    spec = "[res[conv4k3p1,relu,cat[conv2k1|res[conv4k1],conv2k1]]]*2"
    model = models.build(spec, input_shape=(4, 6, 6))
    assert model.layer_names() == ["res1", "res2"]
    assert model.spec() == ",".join(["res[conv4k3p1,relu,cat[conv2k1|res[conv4k1],conv2k1]]"] * 2)
    assert "res2.cat1.branch2.res1.conv1.weight" in model.state_dict()
    assert models.expand("res[conv4k1|conv4k1s2],cat[relu|tanh]") == ["conv4k1", "conv4k1s2", "relu", "tanh"]


@pytest.mark.parametrize("spec,shape,message", [
    ("res[conv8k3p1]", (3, 8, 8), r"layer res1 \(res\[conv8k3p1\]\) does not fit input shape \(3, 8, 8\): the "
                                  r"residual sum needs equal shapes, but the body gives \(8, 8, 8\) and the "
                                  r"identity shortcut gives \(3, 8, 8\)"),
    ("conv4k1,res[conv4k1,res[conv2k1]]", (3, 8, 8), r"layer res1.res1 .* body gives \(2, 8, 8\) .* \(4, 8, 8\)"),
    ("cat[conv8k3p1|conv4k3]", (3, 8, 8), r"cat1 .* branch1 gives \(8, 8, 8\) and branch2 gives \(4, 6, 6\)"),
    ("res[conv4k3s2p1|conv4k1]", (3, 8, 8), r"body gives \(4, 4, 4\) and the shortcut gives \(4, 8, 8\)"),
    ("cat[conv4k1|conv4k9]", (3, 8, 8),
     r"layer cat1.branch2.conv1 \(conv4k9\) does not fit input shape \(3, 8, 8\): weight height"),
    ("res[]", (3, 8, 8), "empty part"),
    ("res[conv3k1|conv3k1|conv3k1]", (3, 8, 8), "at most one '|'"),
    ("cat[conv3k1|conv3k1", (3, 8, 8), "unclosed"),
    ("conv3k1|conv3k1", (3, 8, 8), "unmatched '|'"),
    ("relu*2", (3, 8, 8), "'\\*N' must follow"),
])
def test_bad_blocks_fail_at_build_naming_the_layer(spec, shape, message):
    with pytest.raises(ValueError, match=message):
        models.build(spec, input_shape=shape)


@pytest.mark.parametrize("spec,message", [
    ("conv8k3s0", "stride must be >= 1, got 0"),
    ("conv8k3d0", "dilation must be >= 1, got 0"),
    ("conv8k3g0", "group count must be >= 1, got 0"),
    ("conv8k0", "kernel size must be >= 1"),
    ("conv0k3", "filter count must be >= 1"),
    ("conv8k3g3", "g3 must divide"),
    ("maxpool2s0", "stride must be >= 1"),
    ("adaptiveavgpool0", "output size must be >= 1"),
    ("fc0", "output count must be >= 1"),
    ("pattern:foo=1", "pattern options are name=value pairs with names n, m, k, width, fc, classes; got 'foo=1'"),
    ("pattern:n=x", "pattern option n must be an int, got 'x'"),
    ("[relu]*100000000,fc10", r"asks for 100,000,000 layers; at most 10,000"),
    ("[[relu]*1000]*1000", r"asks for 1,000,000 layers"),
    ("conv100000k5,conv100000k5", r"layer conv2 \(conv100000k5\) .* 250,007,700,000 parameters"),
])
def test_specs_asking_for_too_much_or_zero_are_clear_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        models.build(spec, input_shape=(3, 28, 28))


@pytest.mark.parametrize("shape,error,message", [
    ((1, 100000, 100000), ValueError, r"(activation values per sample: .* GiB|more than this machine's memory)"),
    ((1, 0, 28), ValueError, "input_shape must be 1 to 3 positive ints"),
    ((1, 2, 3, 4), ValueError, "input_shape must be 1 to 3 positive ints"),
    ("1x28x28", TypeError, "input_shape must be a tuple"),
])
def test_absurd_input_shapes_are_refused_before_allocating(shape, error, message):
    with pytest.raises(error, match=message):
        models.build("conv4k3,relu,gap,fc10", input_shape=shape)


def test_new_layer_tokens_round_trip():
    spec = "lrn5k2,conv4k3,bn,relu,adaptiveavgpool3x2,bnnoaffine,adaptivemaxpool1,flatten,bn1deps0.001,fc3"
    model = models.build(spec, input_shape=(3, 9, 9))
    assert model.spec() == spec and model.output_shape((3, 9, 9)) == (3,)
    assert type(model["bn3"]).__name__ == "BatchNorm1d" and model["bn3"].eps == 0.001


def _random_spec(rng, depth=0):
    """A spec in the language's grammar with random layers and numbers (zeros and huge ones included), some of
    which fit their input and some of which do not."""
    number = lambda: rng.choice(["1", "2", "3", "1", "2", "3", "4", "0", "1x2", "99999999999"])  # noqa: E731
    def token():
        kind = rng.choice(["conv", "conv1d", "local", "maxpool", "avgpool", "adaptiveavgpool", "adaptivemaxpool",
                           "bn", "bn1d", "lrn", "fc", "relu", "tanh", "gap", "flatten", "dropout", "lrelu"])
        if kind in ("conv", "conv1d", "local"):
            text = f"{kind}{number()}k{number()}"
            text += rng.choice(["", "", f"s{number()}", f"p{number()}", f"d{number()}", f"g{number()}", "nobias",
                                "psame"])
        elif kind in ("maxpool", "avgpool"):
            text = f"{kind}{number()}" + rng.choice(["", f"s{number()}", f"p{number()}", "ceil", "nopad"])
        elif kind.startswith("adaptive") or kind in ("fc", "lrn"):
            text = f"{kind}{number()}"
        elif kind.startswith("bn"):
            text = kind + rng.choice(["", "eps0", "eps0.001", "momentum2", "momentumnone", "noaffine"])
        else:
            text = kind + (rng.choice(["", "0.5", "2", "1e-3"]) if kind in ("dropout", "lrelu") else "")
        return text
    def sequence(limit):
        return ",".join(item(limit) for _ in range(rng.randint(1, 3)))
    def item(limit):
        roll = rng.random()
        if limit < 2 and roll < 0.15:
            return f"res[{sequence(limit + 1)}" + (f"|{sequence(limit + 1)}" if rng.random() < 0.5 else "") + "]"
        if limit < 2 and roll < 0.3:
            return "cat[" + "|".join(sequence(limit + 1) for _ in range(rng.randint(1, 3))) + "]"
        if limit < 2 and roll < 0.4:
            return f"[{sequence(limit + 1)}]*{rng.choice(['0', '1', '3', '100000'])}"
        return token()
    return sequence(depth)


def test_random_specs_build_or_fail_cleanly():
    """Random specs in the grammar: each builds (and prints a spec that builds the same model) or raises
    ValueError/TypeError, with nothing big allocated (max_bytes of 16 MiB)."""
    from hypothesis import HealthCheck, given, settings, strategies

    built = []

    @settings(max_examples=300, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategies.randoms(use_true_random=False), strategies.sampled_from([(3, 7, 6), (4, 9), (5,)]))
    def check(rng, shape):
        spec = _random_spec(rng)
        try:
            model = models.build(spec, input_shape=shape, max_bytes=1 << 24)
        except (ValueError, TypeError):
            return
        built.append(spec)
        assert models.build(model.spec(), input_shape=shape, max_bytes=1 << 24).spec() == model.spec()

    check()
    assert len(built) >= 10  # the generator reaches models that build, not only errors (18-25 seen)

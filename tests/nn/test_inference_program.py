"""nn.infer's recorded programs: a later call with the same input signature runs the recorded steps, with the
same bits as the walk that recorded them; another signature, an edited model or a bad input goes through the
walk again (and its errors); calls from several threads get their own results."""
import copy
import pickle
import threading

import numpy as np
import pytest

import nbconv.functional as F
from nbconv import nn
from nbconv.nn import inference
from nbconv.nn.module import Parameter
from tests.nn.test_inference import _model

SPECS = {
    "strided residuals": ("conv8k3p1nobias,bn,relu,res[conv8k3p1nobias,bn,relu,conv8k3p1nobias,bn],relu,"
                          "res[conv16k3s2p1nobias,bn,relu,conv16k3p1nobias,bn|conv16k1s2nobias,bn],relu,"
                          "maxpool2,gap,fc5",
                          (3, 9, 11)),
    "same padding, dilation, groups": ("conv8k4psame,bn,relu6,conv8k3p2d2g2,bn,relu,res[conv8k1nobias,bn],relu,"
                                       "conv6k5s3p1,relu,gap,fc3", (4, 13, 10)),
    "winograd and pointwise": ("conv32k3p1nobias,bn,relu,res[conv32k3p1nobias,bn,relu,conv32k1nobias,bn],relu,"
                               "conv16k1,bn,gap,fc4", (32, 10, 21)),
    "norms after fresh outputs": ("cat[conv4k1,bn,relu|conv4k3p1,relu],bn,relu,res[conv8k1],relu6,flatten,fc6,"
                                  "bn1d,relu,fc3", (3, 5, 6)),
}


def _walked(model, x):
    """What the walk gives (the first call of a signature runs it), with no program kept before or after."""
    kept = model.__dict__.pop("_inference_programs", None)
    try:
        return inference._record(model, x)[1]
    finally:
        model.__dict__.pop("_inference_programs", None)
        if kept is not None:
            model._inference_programs = kept


def _assert_close(got, expected):
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * float(np.abs(expected).max()))


@pytest.mark.parametrize("name", SPECS)
def test_program_gives_the_walks_bits(name, rng):
    spec, input_shape = SPECS[name]
    model = _model(spec, input_shape)
    for batch in (1, 3):
        x = rng.standard_normal((batch,) + input_shape).astype(np.float32)
        kept = x.copy()
        first = nn.infer(model, x)  # recorded
        for _ in range(2):
            again = nn.infer(model, x)  # run from the program
            assert again is not first
            np.testing.assert_array_equal(again, first)
        np.testing.assert_array_equal(again, _walked(model, x))
        np.testing.assert_array_equal(x, kept)
        _assert_close(again, model.forward(x))
    assert len(model._inference_programs) == 2  # one per batch size


def test_program_runs_bound_convolutions_without_the_functional_path(rng, monkeypatch):
    spec, input_shape = SPECS["strided residuals"]
    model = _model(spec, input_shape)
    x = rng.standard_normal((2,) + input_shape).astype(np.float32)
    expected = nn.infer(model, x)
    calls = []
    original = F._conv2d
    monkeypatch.setattr(F, "_conv2d", lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    np.testing.assert_array_equal(nn.infer(model, x), expected)
    assert not calls
    model.layers[0].weight.mark_changed()  # a new version: walked and bound again
    np.testing.assert_array_equal(nn.infer(model, x), expected)
    assert calls


def test_a_second_input_shape_records_its_own_program(rng):
    spec, input_shape = SPECS["strided residuals"]
    model = _model(spec, input_shape)
    small = rng.standard_normal((1,) + input_shape).astype(np.float32)
    large = rng.standard_normal((2, 3, 17, 15)).astype(np.float32)
    for _ in range(2):
        for x in (small, large):
            _assert_close(nn.infer(model, x), model.forward(x))
    assert len(model._inference_programs) == 2


def test_an_edited_model_is_walked_again(rng):
    spec, input_shape = SPECS["strided residuals"]
    model = _model(spec, input_shape)
    x = rng.standard_normal((2,) + input_shape).astype(np.float32)
    nn.infer(model, x)
    block = model.layers[3]
    convolution = block.body.layers[0]
    edits = [lambda: convolution.weight.value.__setitem__((0, 0), 2.0) or convolution.weight.mark_changed(),
             lambda: setattr(convolution.weight, "value", convolution.weight.value * 0.5),
             lambda: setattr(block.body.layers[-1], "running_mean", block.body.layers[-1].running_mean + 1.0),
             lambda: convolution.hyper.__setitem__("dilation", (1, 1)),  # the same value: no change
             lambda: block.body.layers.__setitem__(2, nn.ReLU6()),
             lambda: model.layers.__setitem__(4, nn.ReLU6()),
             lambda: model.layers.insert(5, nn.ReLU())]
    for edit in edits:
        edit()
        got = nn.infer(model, x)
        _assert_close(got, model.forward(x))
        np.testing.assert_array_equal(nn.infer(model, x), got)


@pytest.mark.parametrize("spec, input_shape", [SPECS["strided residuals"], ("fc6,relu,fc3", (5,))],
                         ids=["bound convolutions", "no convolution"])
def test_copies_and_pickles_after_infer_run_their_own_layers(spec, input_shape, rng):
    """A copy made after nn.infer records its own programs: edits to the copy (or to the original) reach only
    the model edited; a model that has run nn.infer pickles."""
    model = _model(spec, input_shape)
    x = rng.standard_normal((2,) + input_shape).astype(np.float32)
    original = nn.infer(model, x)
    clone = copy.deepcopy(model)
    restored = pickle.loads(pickle.dumps(model))
    for edited in (clone, model):
        for parameter in edited.parameters():
            parameter.value = parameter.value * 0.5
        got = nn.infer(edited, x)
        _assert_close(got, edited.forward(x))
        assert not np.array_equal(got, original)
    np.testing.assert_array_equal(nn.infer(restored, x), original)


def test_bias_replaced_by_none_is_seen(rng):
    model = _model("conv8k3p1,bn,relu,conv4k1,relu,gap,fc2", (3, 7, 7))
    x = rng.standard_normal((2, 3, 7, 7)).astype(np.float32)
    nn.infer(model, x)
    model.layers[3].bias = None
    _assert_close(nn.infer(model, x), model.forward(x))


def test_bad_input_after_a_program_still_gets_the_clear_error(rng):
    spec, input_shape = SPECS["strided residuals"]
    model = _model(spec, input_shape)
    x = rng.standard_normal((2,) + input_shape).astype(np.float32)
    nn.infer(model, x)
    with pytest.raises(ValueError, match="channel|C/groups"):
        nn.infer(model, rng.standard_normal((2, 4, 9, 11)).astype(np.float32))
    with pytest.raises(TypeError, match="float32 or float64"):
        nn.infer(model, np.ones((2,) + input_shape, np.int32))
    with pytest.raises(TypeError, match="share one dtype"):
        nn.infer(model, np.ones((2,) + input_shape, np.float64))
    np.testing.assert_array_equal(nn.infer(model, x), _walked(model, x))


def test_calls_from_threads_get_their_own_results(rng):
    spec, input_shape = SPECS["winograd and pointwise"]
    model = _model(spec, input_shape)
    images = [rng.standard_normal((batch,) + input_shape).astype(np.float32) for batch in (1, 2, 1, 3)]
    expected = [_walked(model, x) for x in images]
    failures, start = [], threading.Barrier(len(images))

    def infer(index):
        start.wait()
        for _ in range(15):
            if not np.array_equal(nn.infer(model, images[index]), expected[index]):
                failures.append(index)
    threads = [threading.Thread(target=infer, args=(index,)) for index in range(len(images))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures


def test_intermediate_arrays_are_let_go_after_their_last_reader(rng):
    spec, input_shape = SPECS["strided residuals"]
    model = _model(spec, input_shape)
    x = rng.standard_normal((1,) + input_shape).astype(np.float32)
    nn.infer(model, x)
    program = next(iter(model._inference_programs.values()))
    released = {slot for _, release in program.schedule for slot in release}
    assert released == set(range(program.slot_count)) - {program.output_slot}


def test_a_changed_model_drops_every_program(rng):
    """Programs hold the arrays they were bound to: once one finds the model changed, none is kept."""
    spec, input_shape = SPECS["strided residuals"]
    model = _model(spec, input_shape)
    small, large = (rng.standard_normal((batch,) + input_shape).astype(np.float32) for batch in (1, 2))
    nn.infer(model, small)
    nn.infer(model, large)
    assert len(model._inference_programs) == 2
    model.layers[0].weight.value = model.layers[0].weight.value * 2
    _assert_close(nn.infer(model, small), model.forward(small))
    assert len(model._inference_programs) == 1


def test_a_new_weight_that_no_longer_fits_the_batch_norm_gets_the_walk_s_error(rng):
    """A 'same'-padded convolution (the walk's own step, not a bound one) fused with its batch norm, then given
    a weight of another channel count: the batch norm's own error, as model.forward gives it."""
    model = _model("conv8k4psame,bn,relu,gap,fc3", (3, 9, 9))
    x = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    nn.infer(model, x)
    convolution = model.layers[0]
    convolution.weight = Parameter(rng.standard_normal((6, 3, 4, 4)).astype(np.float32))
    convolution.bias = Parameter(rng.standard_normal(6).astype(np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm2d\(8\) input must have 8 channels"):
        nn.infer(model, x)

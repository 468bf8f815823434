"""The training loop's loss (nbconv.train.StepLoss): the same bits as nbconv.functional's checked path,
which it falls back to, with its errors, whenever its once-an-epoch checks do not hold."""
import numpy as np
import pytest

from nbconv import functional as F
from nbconv.train import StepLoss

from .reference import softmax_cross_entropy as reference_loss


def _functional(logits, labels):
    loss, grad = F.softmax_cross_entropy(logits, labels)
    return loss, grad, int((logits.argmax(axis=1) == labels).sum())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("label_dtype", [np.uint8, np.int32, np.int64])
def test_same_bits_as_functional_on_random_batches(dtype, label_dtype):
    rng = np.random.default_rng(3)
    for N, K, count in [(1, 2, 5), (7, 10, 40), (64, 10, 500), (33, 13, 101)]:
        labels = rng.integers(0, K, count).astype(label_dtype)
        mine = rng.permutation(count)[:N]
        logits = (4 * rng.standard_normal((N, K))).astype(dtype)
        loss, grad, hits = StepLoss(labels)(logits, mine)
        expected = _functional(logits, labels[mine])
        assert loss == expected[0] and hits == expected[2]
        np.testing.assert_array_equal(grad, expected[1])
        wide = logits.astype(np.float64)
        probabilities = np.exp(wide - wide.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        reference_grad = (probabilities - np.eye(K)[labels[mine].astype(np.int64)]) / N
        tolerance = 1e-5 if dtype == np.float32 else 1e-12
        expected_loss = reference_loss(wide, labels[mine].astype(np.int64))
        np.testing.assert_allclose(loss, expected_loss, rtol=tolerance, atol=tolerance)
        np.testing.assert_allclose(grad, reference_grad, rtol=tolerance, atol=tolerance)


def test_labels_outside_the_classes_take_the_checked_path():
    labels = np.array([0, 1, 12, 2], np.int64)  # 12: not a class of 10-way logits
    step_loss = StepLoss(labels)
    logits = np.zeros((2, 10), np.float32)
    loss, grad, hits = step_loss(logits, np.array([0, 3]))  # a batch without the bad label trains as before
    assert loss == pytest.approx(np.log(10)) and grad.shape == (2, 10)
    with pytest.raises(ValueError, match="labels must lie in"):
        step_loss(logits, np.array([1, 2]))
    with pytest.raises(ValueError, match="labels must lie in"):
        StepLoss(np.array([-1, 0]))(logits[:1], np.array([0]))


def test_non_integer_labels_and_bad_logits_get_functional_errors():
    with pytest.raises(TypeError, match="labels must be an integer array"):
        StepLoss(np.array([0.0, 1.0]))(np.zeros((2, 3), np.float32), np.array([0, 1]))
    with pytest.raises(ValueError, match="logits"):
        StepLoss(np.array([0, 1]))(np.zeros((2, 3, 1), np.float32), np.array([0, 1]))
    with pytest.raises(TypeError):
        StepLoss(np.array([0, 1]))(np.zeros((2, 3), np.int32), np.array([0, 1]))


def test_non_contiguous_logits_give_the_same_result():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 6, 20)
    wide = rng.standard_normal((8, 12)).astype(np.float32)
    logits = wide[:, ::2]  # a strided view: the checked path copies it
    mine = np.arange(8)
    loss, grad, hits = StepLoss(labels)(logits, mine)
    expected = _functional(np.ascontiguousarray(logits), labels[mine])
    assert loss == expected[0] and hits == expected[2]
    np.testing.assert_array_equal(grad, expected[1])

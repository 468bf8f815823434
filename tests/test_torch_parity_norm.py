"""Batch norm, local response norm and adaptive pooling equal PyTorch's, forward and backward (skipped
when torch is not installed)."""
import numpy as np
import pytest

import nbconv.functional as F

torch = pytest.importorskip("torch")


def _grads(output, inputs, grad_output):
    return [None if g is None else g.numpy() for g in
            torch.autograd.grad(output, inputs, torch.from_numpy(grad_output), allow_unused=True)]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(6, 3), (4, 5, 7), (3, 4, 5, 6)])
def test_batch_norm_equals_torch(shape, training, rng):
    x = rng.standard_normal(shape) * 2 + 1
    C = shape[1]
    running_mean, running_var = rng.standard_normal(C), rng.random(C) + 0.5
    weight, bias = rng.standard_normal(C), rng.standard_normal(C)
    grad_y = rng.standard_normal(shape)
    t_running = (torch.from_numpy(running_mean.copy()), torch.from_numpy(running_var.copy()))
    t_x, t_w, t_b = (torch.from_numpy(a.copy()).requires_grad_() for a in (x, weight, bias))
    t_y = torch.nn.functional.batch_norm(t_x, *t_running, t_w, t_b, training=training, momentum=0.2, eps=1e-4)
    y = F.batch_norm(x, running_mean, running_var, weight, bias, training=training, momentum=0.2, eps=1e-4)
    np.testing.assert_allclose(y, t_y.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(running_mean, t_running[0].numpy(), rtol=1e-12)
    np.testing.assert_allclose(running_var, t_running[1].numpy(), rtol=1e-12)
    ours = F.batch_norm_backward(grad_y, x, running_mean, running_var, weight, bias, training=training, eps=1e-4)
    for name, mine, theirs in zip(("input", "weight", "bias"), ours, _grads(t_y, (t_x, t_w, t_b), grad_y)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-11, err_msg=name)


def test_batch_norm_layer_buffers_follow_torch(rng):
    from nbconv import nn
    ours, theirs = nn.BatchNorm2d(3, momentum=None, dtype=np.float64), torch.nn.BatchNorm2d(3, momentum=None).double()
    for _ in range(3):
        x = rng.standard_normal((4, 3, 2, 5))
        ours.forward(x)
        theirs(torch.from_numpy(x))
    for name, buffer in theirs.named_buffers():
        np.testing.assert_allclose(ours.named_buffers()[name], buffer.numpy(), rtol=1e-12, err_msg=name)


@pytest.mark.parametrize("shape,size", [((2, 7, 4, 3), 5), ((3, 4, 6), 2), ((2, 3, 2, 2), 8)])
def test_local_response_norm_equals_torch(shape, size, rng):
    x = rng.standard_normal(shape) * 3
    grad_y = rng.standard_normal(shape)
    hyper = dict(alpha=0.2, beta=0.75, k=2.0)
    t_x = torch.from_numpy(x.copy()).requires_grad_()
    t_y = torch.nn.functional.local_response_norm(t_x, size, **hyper)
    np.testing.assert_allclose(F.local_response_norm(x, size, **hyper), t_y.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(F.local_response_norm_backward(grad_y, x, size, **hyper),
                               _grads(t_y, (t_x,), grad_y)[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape,output_size", [((2, 3, 7, 10), (3, 4)), ((1, 2, 3, 5), (7, 6)),
                                               ((2, 2, 13, 13), (6, 6)), ((1, 3, 5, 4), 1)])
def test_adaptive_pools_equal_torch(shape, output_size, rng):
    x = rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1
    t_x = torch.from_numpy(x.copy()).requires_grad_()
    t_avg = torch.nn.functional.adaptive_avg_pool2d(t_x, output_size)
    t_max, t_indices = torch.nn.functional.adaptive_max_pool2d(t_x, output_size, return_indices=True)
    grad_y = np.random.default_rng(1).standard_normal(tuple(t_avg.shape))
    np.testing.assert_allclose(F.adaptive_avg_pool2d(x, output_size), t_avg.detach().numpy(), rtol=1e-12)
    output, indices = F.adaptive_max_pool2d(x, output_size, return_indices=True)
    np.testing.assert_array_equal(output, t_max.detach().numpy())
    np.testing.assert_array_equal(indices, t_indices.numpy())
    np.testing.assert_allclose(F.adaptive_avg_pool2d_backward(grad_y, x, output_size),
                               _grads(t_avg, (t_x,), grad_y)[0], rtol=1e-12)
    np.testing.assert_allclose(F.adaptive_max_pool2d_backward(grad_y, x, output_size),
                               _grads(t_max, (t_x,), grad_y)[0], rtol=1e-12)

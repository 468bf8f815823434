"""Independent float64 references, written plainly with numpy, for checking the kernels."""
import numpy as np


def conv2d(x, w, b=None, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1):
    """Cross-correlation by explicit padding and a loop over output positions. padding: ((top, bottom), (left, right))."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    N, C, H, W = x.shape
    D, Cg, KH, KW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), padding[0], padding[1]))
    ext_h, ext_w = dilation[0] * (KH - 1) + 1, dilation[1] * (KW - 1) + 1
    OH = (xp.shape[2] - ext_h) // stride[0] + 1
    OW = (xp.shape[3] - ext_w) // stride[1] + 1
    Dg = D // groups
    out = np.zeros((N, D, OH, OW))
    for d in range(D):
        g = d // Dg
        for oh in range(OH):
            for ow in range(OW):
                h0, w0 = oh * stride[0], ow * stride[1]
                window = xp[:, g * Cg:(g + 1) * Cg, h0:h0 + ext_h:dilation[0], w0:w0 + ext_w:dilation[1]]
                out[:, d, oh, ow] = np.sum(window * w[d], axis=(1, 2, 3))
    if b is not None:
        out += np.asarray(b, np.float64)[None, :, None, None]
    return out


def pool2d(x, kernel, stride, padding, out_shape, mode, count_include_pad=True):
    """Max or average pooling with PyTorch's window and divisor rules, one window at a time."""
    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    out = np.zeros(out_shape)
    for oh in range(out_shape[2]):
        for ow in range(out_shape[3]):
            h0, w0 = oh * stride[0] - padding[0], ow * stride[1] - padding[1]
            h1, w1 = min(h0 + kernel[0], H + padding[0]), min(w0 + kernel[1], W + padding[1])
            window = x[:, :, max(h0, 0):min(h1, H), max(w0, 0):min(w1, W)]
            if mode == "max":
                out[:, :, oh, ow] = window.max(axis=(2, 3))
            else:
                divisor = (h1 - h0) * (w1 - w0) if count_include_pad else window.shape[2] * window.shape[3]
                out[:, :, oh, ow] = window.sum(axis=(2, 3)) / divisor
    return out


def numerical_gradient(function, array, grad_output, epsilon=1e-6):
    """d sum(function() * grad_output) / d array by central differences, perturbing `array` in place."""
    grad = np.zeros_like(array, dtype=np.float64)
    flat = array.reshape(-1)
    for k in range(flat.size):
        saved = flat[k]
        flat[k] = saved + epsilon
        plus = np.sum(function() * grad_output)
        flat[k] = saved - epsilon
        minus = np.sum(function() * grad_output)
        flat[k] = saved
        grad.reshape(-1)[k] = (plus - minus) / (2 * epsilon)
    return grad


def local_conv2d(x, w, b=None, stride=(1, 1), padding=(0, 0)):
    """Locally connected layer: each output position (oh, ow) has its own filters w[oh, ow] (D, C, kh, kw)."""
    x = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    OH, OW, D, C, KH, KW = w.shape
    out = np.zeros((x.shape[0], D, OH, OW))
    for oh in range(OH):
        for ow in range(OW):
            window = x[:, :, oh * stride[0]:oh * stride[0] + KH, ow * stride[1]:ow * stride[1] + KW]
            out[:, :, oh, ow] = np.einsum("ncij,dcij->nd", window, w[oh, ow])
    if b is not None:
        out += b[None]
    return out


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of softmax(logits) against integer labels, in float64."""
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probabilities[np.arange(len(labels)), labels].mean()


def batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps):
    """Batch normalization over axis 1 in float64: (output, new running_mean, new running_var)."""
    x = np.asarray(x, np.float64)
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if training:
        mean, variance = x.mean(axis=axes), x.var(axis=axes)
        count = x.size // x.shape[1]
        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var = (1 - momentum) * running_var + momentum * variance * count / (count - 1)
    else:
        mean, variance = np.asarray(running_mean, np.float64), np.asarray(running_var, np.float64)
    output = (x - mean.reshape(shape)) / np.sqrt(variance.reshape(shape) + eps)
    if weight is not None:
        output = output * np.asarray(weight, np.float64).reshape(shape)
    if bias is not None:
        output = output + np.asarray(bias, np.float64).reshape(shape)
    return output, running_mean, running_var


def local_response_norm(x, size, alpha, beta, k):
    """Local response normalization across channels, one channel window at a time, in float64."""
    x = np.asarray(x, np.float64)
    C = x.shape[1]
    out = np.empty_like(x)
    for c in range(C):
        window = x[:, max(c - size // 2, 0):min(c + (size - 1) // 2 + 1, C)]
        out[:, c] = x[:, c] / (k + alpha / size * np.sum(window ** 2, axis=1)) ** beta
    return out


def adaptive_pool2d(x, output_size, mode):
    """Adaptive max or average pooling with PyTorch's windows: (output, flat indices of the maxima)."""
    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    OH, OW = output_size
    out = np.zeros((N, C, OH, OW))
    indices = np.zeros((N, C, OH, OW), np.int64)
    for oh in range(OH):
        h0, h1 = int(np.floor(oh * H / OH)), int(np.ceil((oh + 1) * H / OH))
        for ow in range(OW):
            w0, w1 = int(np.floor(ow * W / OW)), int(np.ceil((ow + 1) * W / OW))
            window = x[:, :, h0:h1, w0:w1].reshape(N, C, -1)
            if mode == "max":
                out[:, :, oh, ow] = window.max(axis=2)
                position = window.argmax(axis=2)
                indices[:, :, oh, ow] = (h0 + position // (w1 - w0)) * W + w0 + position % (w1 - w0)
            else:
                out[:, :, oh, ow] = window.mean(axis=2)
    return out, indices

def _padded_taps(shape, stride, padding, dilation, kernel):
    """For each tap (i, j): the (row, column) slices of the explicitly padded input that it reads for every
    output position."""
    Hp = shape[2] + padding[0][0] + padding[0][1]
    Wp = shape[3] + padding[1][0] + padding[1][1]
    OH = (Hp - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    OW = (Wp - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            rows = slice(i * dilation[0], i * dilation[0] + stride[0] * (OH - 1) + 1, stride[0])
            cols = slice(j * dilation[1], j * dilation[1] + stride[1] * (OW - 1) + 1, stride[1])
            yield i, j, rows, cols


def conv2d_backward_weight(grad_output, x, weight_shape, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1),
                           groups=1):
    """d loss / d weight by the definition: the sum over n, oh, ow of grad_output times the explicitly padded
    input (every product taken, those with padding zeros included, so inf * 0 gives NaN as in PyTorch)."""
    g = np.asarray(grad_output, np.float64)
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), padding[0], padding[1]))
    D, Cg, KH, KW = weight_shape
    Dg = D // groups
    out = np.zeros(weight_shape)
    with np.errstate(invalid="ignore", over="ignore"):
        for i, j, rows, cols in _padded_taps(x.shape, stride, padding, dilation, (KH, KW)):
            for group in range(groups):
                window = xp[:, group * Cg:(group + 1) * Cg, rows, cols]
                out[group * Dg:(group + 1) * Dg, :, i, j] = np.einsum("ndhw,nchw->dc", g[:, group * Dg:(group + 1) * Dg],
                                                                      window)
    return out


def conv2d_backward_input(grad_output, weight, input_shape, stride=(1, 1), padding=((0, 0), (0, 0)),
                          dilation=(1, 1), groups=1):
    """d loss / d input by the definition: every output's gradient times every filter tap, added at the padded
    position the tap read, then the padding cropped (only real outputs contribute)."""
    g = np.asarray(grad_output, np.float64)
    w = np.asarray(weight, np.float64)
    N, C, H, W = input_shape
    D, Cg, KH, KW = w.shape
    Dg = D // groups
    grad = np.zeros((N, C, H + sum(padding[0]), W + sum(padding[1])))
    with np.errstate(invalid="ignore", over="ignore"):
        for i, j, rows, cols in _padded_taps(input_shape, stride, padding, dilation, (KH, KW)):
            for group in range(groups):
                grad[:, group * Cg:(group + 1) * Cg, rows, cols] += np.einsum(
                    "ndhw,dc->nchw", g[:, group * Dg:(group + 1) * Dg], w[group * Dg:(group + 1) * Dg, :, i, j])
    return grad[:, :, padding[0][0]:padding[0][0] + H, padding[1][0]:padding[1][0] + W]


def local_conv2d_backward(grad_output, x, w, stride=(1, 1), padding=(0, 0)):
    """(grad_input, grad_weight) of local_conv2d by the definition over the explicitly padded input."""
    g = np.asarray(grad_output, np.float64)
    w = np.asarray(w, np.float64)
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    OH, OW, D, C, KH, KW = w.shape
    grad_input = np.zeros(xp.shape)
    grad_weight = np.zeros(w.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        for oh in range(OH):
            for ow in range(OW):
                rows = slice(oh * stride[0], oh * stride[0] + KH)
                cols = slice(ow * stride[1], ow * stride[1] + KW)
                grad_weight[oh, ow] = np.einsum("nd,ncij->dcij", g[:, :, oh, ow], xp[:, :, rows, cols])
                grad_input[:, :, rows, cols] += np.einsum("nd,dcij->ncij", g[:, :, oh, ow], w[oh, ow])
    H, W = x.shape[2], x.shape[3]
    return grad_input[:, :, padding[0]:padding[0] + H, padding[1]:padding[1] + W], grad_weight


def batch_norm_backward(grad_output, x, mean, invstd, weight, training):
    """(grad_input, grad_weight, grad_bias) of batch normalization over axis 1 in float64, given the (C,)
    statistics used by the forward pass. training=True differentiates through the batch mean and biased
    variance (the statistics must be the batch's); training=False treats them as constants."""
    x = np.asarray(x, np.float64)
    g = np.asarray(grad_output, np.float64)
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    mean = np.asarray(mean, np.float64).reshape(shape)
    invstd = np.asarray(invstd, np.float64).reshape(shape)
    normalized = (x - mean) * invstd
    scale = np.ones(shape) if weight is None else np.asarray(weight, np.float64).reshape(shape)
    grad_normalized = g * scale
    if training:
        grad_input = invstd * (grad_normalized - grad_normalized.mean(axis=axes, keepdims=True)
                               - normalized * (grad_normalized * normalized).mean(axis=axes, keepdims=True))
    else:
        grad_input = grad_normalized * invstd
    return grad_input, (g * normalized).sum(axis=axes), g.sum(axis=axes)


def local_response_norm_backward(grad_output, x, size, alpha, beta, k):
    """d loss / d input of local_response_norm in float64: output[c] = x[c] * D[c] ** -beta with
    D[c] = k + alpha / size * sum of x[j] ** 2 over j in [c - size // 2, c + (size - 1) // 2]."""
    x = np.asarray(x, np.float64)
    g = np.asarray(grad_output, np.float64)
    C = x.shape[1]
    denominator = np.empty_like(x)
    for c in range(C):
        window = x[:, max(c - size // 2, 0):min(c + (size - 1) // 2 + 1, C)]
        denominator[:, c] = k + alpha / size * np.sum(window ** 2, axis=1)
    through_denominator = g * x * denominator ** (-beta - 1)
    grad = g * denominator ** -beta
    for j in range(C):  # x[j] sits in the windows of channels c in [j - (size - 1) // 2, j + size // 2]
        windows = through_denominator[:, max(j - (size - 1) // 2, 0):min(j + size // 2 + 1, C)]
        grad[:, j] -= 2 * alpha * beta / size * x[:, j] * np.sum(windows, axis=1)
    return grad


def adaptive_pool2d_backward(grad_output, x, mode):
    """d loss / d input of adaptive max (to the first maximum of each window) or average pooling, in float64."""
    x = np.asarray(x, np.float64)
    g = np.asarray(grad_output, np.float64)
    N, C, H, W = x.shape
    OH, OW = g.shape[2], g.shape[3]
    grad = np.zeros_like(x)
    _, indices = adaptive_pool2d(x, (OH, OW), "max")
    for oh in range(OH):
        h0, h1 = int(np.floor(oh * H / OH)), int(np.ceil((oh + 1) * H / OH))
        for ow in range(OW):
            w0, w1 = int(np.floor(ow * W / OW)), int(np.ceil((ow + 1) * W / OW))
            if mode == "max":
                for n in range(N):
                    for c in range(C):
                        index = indices[n, c, oh, ow]
                        grad[n, c, index // W, index % W] += g[n, c, oh, ow]
            else:
                grad[:, :, h0:h1, w0:w1] += g[:, :, oh, ow][:, :, None, None] / ((h1 - h0) * (w1 - w0))
    return grad

"""Where ResNet-20's training step goes (CIFAR, 3x32x32, batch 128 by default), nbconv against PyTorch CPU.

Three parts, in one run:

1. Every layer type on the step's exact shapes, forward and backward timed apart, nbconv's layer objects
   against the same op in PyTorch (functional op + autograd.grad), in alternating rounds; with each group's
   count in the model, a row of the table is the group's share of one step.
2. The whole step (forward, loss, backward; as benchmarks/networks.py times it), nbconv and PyTorch
   alternating, and the same nbconv step with every leaf layer timed in place: what the sum of the layers
   leaves over is the containers' Python (Sequential, Residual) and their residual sums.
3. The optimizer step: SGD with momentum 0.9 and weight decay 5e-4 over the model's parameters.

Times are medians over rounds of the per-call mean of `--repeat` calls, in microseconds.

Usage: python benchmarks/resnet20_profile.py [--rounds 5] [--repeat 5] [--batch 128] [--model resnet20]
       [--threads N] [--clock wall|thread]
"""
import argparse
import statistics
import time
from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as tF

clock = time.perf_counter  # --clock thread: time.thread_time, CPU time of the calling thread (--threads 1)

from nbconv import functional as F
from nbconv import models, nn, optim


def _describe(layer, shape):
    """The group label of a leaf layer with input shape (C, H, W) or (features,)."""
    name = type(layer).__name__
    if name == "Conv2d":
        kh, kw = layer.kernel_size
        stride = layer.hyper["stride"]
        stride = stride if isinstance(stride, int) else stride[0]
        label = (f"conv{kh}x{kw} s{stride} {layer.in_channels}->{layer.out_channels} "
                 f"{shape[1]}x{shape[2]}")
        return label
    if name in ("BatchNorm2d", "ReLU", "GlobalAvgPool2d"):
        return f"{name} {shape[0]}x{shape[1]}x{shape[2]}"
    if name == "Linear":
        return f"Linear {layer.weight.value.shape[1]}->{layer.weight.value.shape[0]}"
    return f"{name} {'x'.join(map(str, shape))}"


def _torch_op(layer):
    """(function of x giving y, parameters as torch tensors with requires_grad) for a leaf layer."""
    name = type(layer).__name__
    if name == "Conv2d":
        weight = torch.from_numpy(layer.weight.value.copy()).requires_grad_()
        h = layer.hyper
        return (lambda x: tF.conv2d(x, weight, None, h["stride"], h["padding"], h["dilation"], h["groups"])), [weight]
    if name == "BatchNorm2d":
        weight = torch.ones(layer.num_features, requires_grad=True)
        bias = torch.zeros(layer.num_features, requires_grad=True)
        running_mean, running_var = torch.zeros(layer.num_features), torch.ones(layer.num_features)
        return (lambda x: tF.batch_norm(x, running_mean, running_var, weight, bias, True, 0.1, 1e-5)), [weight, bias]
    if name == "ReLU":
        return torch.relu, []
    if name == "GlobalAvgPool2d":
        return (lambda x: tF.adaptive_avg_pool2d(x, 1)), []
    if name == "Flatten":
        return (lambda x: torch.flatten(x, 1)), []
    if name == "Linear":
        weight = torch.from_numpy(layer.weight.value.copy()).requires_grad_()
        bias = torch.from_numpy(layer.bias.value.copy()).requires_grad_()
        return (lambda x: tF.linear(x, weight, bias)), [weight, bias]
    raise ValueError(f"no PyTorch twin for {name}")


def leaf_groups(model, input_shape):
    """{label: [(layer, input shape without batch, reads the model's input)]} for the model's leaf layers,
    plus the residual sums as {'add CxHxW': [(None, shape, False)]}, in the order they run."""
    groups = defaultdict(list)
    first = models_first_layers(model)

    def visit(path, layer, before, after):
        if isinstance(layer, nn.Residual):
            groups[f"residual sum {'x'.join(map(str, after))}"].append((None, after, False))
        elif not isinstance(layer, (nn.Sequential, nn.Concat)):
            groups[_describe(layer, before)].append((layer, before, id(layer) in first))
    model.trace(tuple(input_shape), visit)
    return groups


def models_first_layers(model):
    from nbconv.model_plans import reading_the_input
    return reading_the_input(model)


def _median_us(samples):
    return statistics.median(samples) * 1e6


def time_group(layer, shape, reads_input, batch, rounds, repeat, rng):
    """{'nbconv forward', 'nbconv backward', 'torch forward', 'torch backward'}: median us a call."""
    x = rng.standard_normal((batch,) + tuple(shape)).astype(np.float32)
    samples = defaultdict(list)
    if layer is None:  # residual sum: nbconv adds in place into the body's output; PyTorch out + x
        other = rng.standard_normal(x.shape).astype(np.float32)
        x_torch, other_torch = torch.from_numpy(x.copy()), torch.from_numpy(other)
        for _ in range(rounds):
            started = clock()
            for _ in range(repeat):
                F.add_(x, other)
            samples["nbconv forward"].append((clock() - started) / repeat)
            started = clock()
            for _ in range(repeat):
                x_torch + other_torch
            samples["torch forward"].append((clock() - started) / repeat)
        samples["nbconv backward"] = samples["torch backward"] = [0.0]
        return {key: _median_us(value) for key, value in samples.items()}
    y = layer.forward(x)
    grad = rng.standard_normal(y.shape).astype(np.float32)
    op, params = _torch_op(layer)
    x_torch = torch.from_numpy(x).requires_grad_(not reads_input)
    grad_torch = torch.from_numpy(grad)
    wrt = ([] if reads_input else [x_torch]) + params
    for _ in range(rounds):
        forward, backward = 0.0, 0.0
        for _ in range(repeat):
            started = clock()
            layer.forward(x)
            forward += clock() - started
            started = clock()
            if reads_input:
                layer.backward(grad, need_input_grad=False)
            else:
                layer.backward(grad)
            backward += clock() - started
        samples["nbconv forward"].append(forward / repeat)
        samples["nbconv backward"].append(backward / repeat)
        forward, backward = 0.0, 0.0
        for _ in range(repeat):
            started = clock()
            y_torch = op(x_torch)
            forward += clock() - started
            started = clock()
            if wrt:
                torch.autograd.grad(y_torch, wrt, grad_torch)
            backward += clock() - started
        samples["torch forward"].append(forward / repeat)
        samples["torch backward"].append(backward / repeat)
    return {key: _median_us(value) for key, value in samples.items()}


def layer_table(model, input_shape, batch, rounds, repeat):
    rng = np.random.default_rng(0)
    rows = []
    for label, members in leaf_groups(model, input_shape).items():
        layer, shape, reads_input = members[0]
        timing = time_group(layer, shape, reads_input, batch, rounds, repeat, rng)
        rows.append((label, len(members), timing))
    # the loss
    logits = rng.standard_normal((batch, 10)).astype(np.float32)
    labels = rng.integers(0, 10, batch)
    samples = defaultdict(list)
    logits_torch = torch.from_numpy(logits).requires_grad_()
    labels_torch = torch.from_numpy(labels)
    for _ in range(rounds):
        started = clock()
        for _ in range(repeat):
            F.softmax_cross_entropy(logits, labels)
        samples["nbconv forward"].append((clock() - started) / repeat)
        forward = backward = 0.0
        for _ in range(repeat):
            started = clock()
            loss = tF.cross_entropy(logits_torch, labels_torch)
            forward += clock() - started
            started = clock()
            torch.autograd.grad(loss, [logits_torch])
            backward += clock() - started
        samples["torch forward"].append(forward / repeat)
        samples["torch backward"].append(backward / repeat)
    samples["nbconv backward"] = [0.0]
    rows.append((f"loss (softmax cross-entropy {batch}x10, fused)", 1,
                 {key: _median_us(value) for key, value in samples.items()}))
    return rows


def whole_steps(model, twin, input_shape, batch, rounds):
    """(nbconv step us, torch step us, {group: in-step us a step}, in-step counts) medians over rounds."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch,) + tuple(input_shape)).astype(np.float32)
    labels = rng.integers(0, 10, batch)
    x_torch, labels_torch = torch.from_numpy(x), torch.from_numpy(labels)
    loss_function = torch.nn.CrossEntropyLoss()
    model.train()
    twin.train()

    def nbconv_once():
        logits = model.forward(x)
        loss, grad = F.softmax_cross_entropy(logits, labels)
        model.backward(grad, need_input_grad=False)

    def torch_once():
        twin.zero_grad(set_to_none=True)
        loss_function(twin(x_torch), labels_torch).backward()

    # in-step timing: wrap each leaf layer's forward and backward
    spent = defaultdict(float)
    labels_of = {}

    def visit(path, layer, before, after):
        if not isinstance(layer, (nn.Sequential, nn.Concat, nn.Residual)):
            labels_of[id(layer)] = _describe(layer, before)
    model.trace(tuple(input_shape), visit)
    originals = []

    def wrap(layer, attribute, label):
        original = getattr(layer, attribute)

        def timed(*args, **kwargs):
            started = clock()
            result = original(*args, **kwargs)
            spent[label] += clock() - started
            return result
        originals.append((layer, attribute))
        setattr(layer, attribute, timed)

    def leaves(layer):
        if isinstance(layer, nn.Sequential):
            for child in layer.layers:
                yield from leaves(child)
        elif isinstance(layer, nn.Residual):
            yield from leaves(layer.body)
            if layer.shortcut is not None:
                yield from leaves(layer.shortcut)
            if layer.activation is not None:
                yield layer.activation
        else:
            yield layer

    nbconv_once(), torch_once()
    plain, theirs, instrumented = [], [], []
    in_step = defaultdict(list)
    for _ in range(rounds):
        for label, once, sink in (("nbconv", nbconv_once, plain), ("torch", torch_once, theirs)):
            started = clock()
            once()
            sink.append(clock() - started)
        for layer in leaves(model):
            label = labels_of[id(layer)]
            wrap(layer, "forward", label + " | forward")
            wrap(layer, "backward", label + " | backward")
        original_loss = F.softmax_cross_entropy

        def timed_loss(*args):
            started = clock()
            result = original_loss(*args)
            spent["loss | forward+backward"] += clock() - started
            return result
        F.softmax_cross_entropy = timed_loss
        spent.clear()
        started = clock()
        nbconv_once()
        instrumented.append(clock() - started)
        F.softmax_cross_entropy = original_loss
        for layer, attribute in originals:
            delattr(layer, attribute)
        originals.clear()
        for key, value in spent.items():
            in_step[key].append(value)
    return (_median_us(plain), _median_us(theirs), _median_us(instrumented),
            {key: _median_us(value) for key, value in in_step.items()})


def optimizer_steps(model, twin, rounds, repeat):
    parameters = model.parameters()
    for parameter in parameters:
        parameter.grad = np.ones_like(parameter.value) * 1e-3
    ours = optim.SGD(parameters, lr=0.1, momentum=0.9, weight_decay=5e-4)
    for parameter in twin.parameters():
        parameter.grad = torch.full_like(parameter, 1e-3)
    theirs = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    ours.step(), theirs.step()
    samples = defaultdict(list)
    for _ in range(rounds):
        for label, step in (("nbconv", ours.step), ("torch", theirs.step)):
            started = clock()
            for _ in range(repeat):
                step()
            samples[label].append((clock() - started) / repeat)
    return _median_us(samples["nbconv"]), _median_us(samples["torch"]), sum(p.value.size for p in parameters)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--threads", type=int, default=None, help="threads for both engines (default: as started)")
    parser.add_argument("--clock", choices=("wall", "thread"), default="wall",
                        help="thread: CPU time of the calling thread, steady on a loaded machine with --threads 1")
    arguments = parser.parse_args()
    global clock
    clock = time.thread_time if arguments.clock == "thread" else time.perf_counter
    if arguments.threads:
        import numba
        numba.set_num_threads(arguments.threads)
        torch.set_num_threads(arguments.threads)
    import os
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from networks import CASES
    architecture, make_twin, input_shape, _, classes, _ = CASES[f"{arguments.model}-step"]
    model = models.build(architecture, input_shape=input_shape, num_classes=classes, seed=0)
    twin = make_twin()
    twin.load_state_dict({key: torch.from_numpy(value) for key, value in model.state_dict().items()})
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {arguments.clock} clock; {arguments.model} batch {arguments.batch}, "
          f"{arguments.rounds} rounds x {arguments.repeat} calls", flush=True)

    rows = layer_table(model, input_shape, arguments.batch, arguments.rounds, arguments.repeat)
    print("\n| layer (input) | calls | nbconv fwd | torch fwd | nbconv bwd | torch bwd | nbconv x calls | "
          "torch x calls | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    total_ours = total_theirs = 0.0
    for label, count, t in rows:
        ours = (t["nbconv forward"] + t["nbconv backward"]) * count
        theirs = (t["torch forward"] + t["torch backward"]) * count
        total_ours += ours
        total_theirs += theirs
        print(f"| {label} | {count} | {t['nbconv forward']:.0f} | {t['torch forward']:.0f} | "
              f"{t['nbconv backward']:.0f} | {t['torch backward']:.0f} | {ours / 1e3:.2f} ms | "
              f"{theirs / 1e3:.2f} ms | {theirs / ours if ours else float('nan'):.2f}x |")
    print(f"| **sum of the layers** | | | | | | **{total_ours / 1e3:.1f} ms** | **{total_theirs / 1e3:.1f} ms** | "
          f"{total_theirs / total_ours:.2f}x |", flush=True)

    ours, theirs, instrumented, in_step = whole_steps(model, twin, input_shape, arguments.batch, arguments.rounds)
    print(f"\nwhole step: nbconv {ours / 1e3:.1f} ms, torch {theirs / 1e3:.1f} ms, ratio {theirs / ours:.2f}x; "
          f"instrumented nbconv step {instrumented / 1e3:.1f} ms")
    layer_sum = sum(in_step.values())
    print(f"inside the instrumented step: leaf layers + loss {layer_sum / 1e3:.1f} ms, the rest (containers, "
          f"residual sums, Python) {(instrumented - layer_sum) / 1e3:.1f} ms")
    for key, value in sorted(in_step.items(), key=lambda item: -item[1]):
        print(f"  {key:45s} {value / 1e3:7.2f} ms")

    ours, theirs, count = optimizer_steps(model, twin, arguments.rounds, arguments.repeat)
    print(f"\nSGD step (momentum 0.9, weight decay 5e-4, {count:,} parameters): nbconv {ours:.0f} us, "
          f"torch {theirs:.0f} us, ratio {theirs / ours:.2f}x")


if __name__ == "__main__":
    main()

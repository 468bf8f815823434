"""The imported ResNet-50 the inference benchmarks run: nbconv's own resnet50 at 3x224x224 (random weights,
running variances spread over [0.5, 2] so that batch norm does more than pass values on), exported to ONNX
and loaded back, so that nbconv runs an imported model and onnxruntime the same file.

    with resnet50_file(rng) as path: ...        # the ONNX file, for as long as the block runs
    model, session = imported_resnet50(rng, threads)   # nbconv's model and an onnxruntime session on it

`package` is the nbconv package (or another tree's copy of it, imported under another name) whose models
and onnx modules build, save and load.
"""
import contextlib
import importlib
import os
import tempfile

SHAPE = (3, 224, 224)


def built_resnet50(rng, package=None):
    """nbconv's resnet50 in eval mode with every running variance drawn from rng, uniform over [0.5, 2]."""
    models = importlib.import_module((package or "nbconv") + ".models")
    source = models.build("resnet50", SHAPE, seed=0).eval()
    for name, buffer in source.named_buffers().items():
        if name.endswith("running_var"):
            buffer[...] = rng.uniform(0.5, 2.0, buffer.shape)
    return source


@contextlib.contextmanager
def resnet50_file(rng, package=None):
    """The path of built_resnet50(rng) saved as ONNX in a temporary folder, removed after the block."""
    source = built_resnet50(rng, package)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "resnet50.onnx")
        importlib.import_module((package or "nbconv") + ".onnx").save(source, path, SHAPE)
        yield path


def onnxruntime_session(path, threads, **settings):
    """An onnxruntime CPU session on the ONNX file with `threads` intra-op threads (and one inter-op), other
    SessionOptions attributes from settings."""
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    for name, value in settings.items():
        setattr(options, name, value)
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def imported_resnet50(rng, threads=None, package=None):
    """(the model loaded back by nbconv's onnx.load, in eval mode; an onnxruntime session on the same file with
    `threads` threads, or None when threads is None)."""
    with resnet50_file(rng, package) as path:
        model = importlib.import_module((package or "nbconv") + ".onnx").load(path).eval()
        session = None if threads is None else onnxruntime_session(path, threads)
    return model, session

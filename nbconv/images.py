"""Image files in and out of models: reading with Pillow, the usual preprocessing (resize the shorter side,
centre crop, per-channel mean/std), and a plain bilinear resize of (C, H, W) arrays that needs no Pillow.

Reading and writing files needs the viz extra (`pip install "nbconv[viz]"`).
"""
import contextlib
import io
import os
import warnings

import numpy as np

from .files import atomic_write_bytes

# torchvision's ImageNet preprocessing: resize the shorter side to 256, crop 224, these mean/std
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_RESIZE = 256 / 224
MAX_PIXELS = 50_000_000  # bigger files are refused before decoding (Pillow's own bomb check warns at 89M)
# Pillow's modes of one channel wider than 8 bits: 16-bit greyscale (PNG, TIFF) and 32-bit integers (what older
# Pillows made of 16-bit PNGs). Their convert("L") clips every value above 255 to white, so they are scaled.
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def require_pillow():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError('reading and writing images needs Pillow: pip install "nbconv[viz]"') from None
    return Image


@contextlib.contextmanager
def _opened(path):
    """The Pillow image at `path`, open, its size checked against MAX_PIXELS; ValueError naming the file when
    it is not an image Pillow can read (also for errors while it is read inside the block), or is larger."""
    Image = require_pillow()
    try:
        with warnings.catch_warnings():  # past 89M pixels Pillow warns, and MAX_PIXELS refuses them below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(path)
        with opened as image:
            if image.width * image.height > MAX_PIXELS:
                raise ValueError(f"{path}: {image.width}x{image.height} pixels is more than the {MAX_PIXELS:,} "
                                 f"nbconv reads")
            yield image
    except (OSError, Image.DecompressionBombError, SyntaxError) as error:
        raise ValueError(f"{path}: not an image nbconv can read ({error})") from None


def read_image(path, channels):
    """The image at `path` as uint8 (channels, H, W): 3 channels as RGB, 1 as grey; 16-bit greyscale scaled
    to 8 bits (65535 -> 255). The pixels in the file's own order (an EXIF orientation tag is not applied, as
    torchvision's loader does not), the first frame of an animation, transparency dropped. ValueError naming
    the file when it is not an image Pillow can read, holds floating-point pixels, or is larger than
    MAX_PIXELS."""
    require_pillow()
    path = os.fspath(path)
    if channels not in (1, 3):
        raise ValueError(f"images can feed models with 1 or 3 input channels, this one has {channels}")
    with _opened(path) as image:
        array = np.asarray(_eight_bit(image, path).convert("RGB" if channels == 3 else "L"))
    return array.transpose(2, 0, 1).copy() if array.ndim == 3 else array[None].copy()


def _eight_bit(image, path):
    """`image` itself, or for greyscale wider than 8 bits an 8-bit ('L') copy scaled from the 16-bit range."""
    _check_mode(image, path)
    if image.mode not in SIXTEEN_BIT_MODES:
        return image
    values = np.asarray(image).astype(np.int64)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise ValueError(f"{path}: its 32-bit pixels range over [{values.min()}, {values.max()}], past the 16-bit "
                         "range [0, 65535] nbconv scales to 0-255; save the image with 8 or 16 bits per channel")
    return require_pillow().fromarray(((values * 255 + 32767) // 65535).astype(np.uint8), "L")


def _check_mode(image, path):
    if image.mode == "F":
        raise ValueError(f"{path}: its pixels are floating-point numbers (Pillow mode F), which have no fixed "
                         "range to map to 0-255; save the image with 8 or 16 bits per channel")


def check_image(path):
    """Raises ValueError naming the file when `path` is not an image Pillow can open (its header only: nothing
    is decoded), holds floating-point pixels, or is larger than MAX_PIXELS: for checking many files before
    reading any."""
    path = os.fspath(path)
    with _opened(path) as image:
        _check_mode(image, path)


def resize(image, height, width):
    """Bilinear resize of a float (C, H, W) array to (C, height, width) (pixel centres aligned, as Pillow
    and PyTorch's align_corners=False)."""
    return _resized_block(image, height, width, 0, 0, height, width)


def _resized_block(image, new_height, new_width, top, left, height, width):
    """Rows [top, top + height) and columns [left, left + width) of `image` (C, H, W) resized to (C,
    new_height, new_width), computed from the source pixels they cover only."""
    image = np.asarray(image, np.float64)
    _, source_height, source_width = image.shape
    rows, first_row = _interpolation_rows(source_height, new_height, top, height)
    columns, first_column = _interpolation_rows(source_width, new_width, left, width)
    covered = image[:, first_row:first_row + rows.shape[1], first_column:first_column + columns.shape[1]]
    return _interpolate(rows, covered, columns)


def _interpolate(rows, image, columns):
    """rows (Y, H) @ image (C, H, W) @ columns (X, W).T: (C, Y, X), as two matrix products (an einsum of the
    three operands without a path costs C*Y*X*H*W: minutes for a photo)."""
    return np.matmul(np.matmul(rows, image), columns.T)


def _interpolation_rows(size, new_size, start, count):
    """Rows [start, start + count) of the (new_size, size) matrix of bilinear weights along one axis,
    restricted to the columns they touch: (that block, the index of its first column)."""
    centres = (np.arange(start, start + count) + 0.5) * size / new_size - 0.5
    centres = np.clip(centres, 0, size - 1)
    low = np.floor(centres).astype(int)
    high = np.minimum(low + 1, size - 1)
    fraction = centres - low
    first = int(low.min())
    matrix = np.zeros((count, int(high.max()) + 1 - first))
    matrix[np.arange(count), low - first] += 1 - fraction
    matrix[np.arange(count), high - first] += fraction
    return matrix, first


def fit(image, height, width, resize_ratio=1.0):
    """Resize a (C, H, W) image so its shorter side is `resize_ratio` times the target's, then crop the
    centre (height, width): the classic classification preprocessing. Returns floats in the input's range.
    Only the cropped part is computed, from the pixels it covers: a long thin image costs what its crop does."""
    _, source_height, source_width = image.shape
    scale = resize_ratio * max(height / source_height, width / source_width)
    new_height = max(height, int(round(source_height * scale)))
    new_width = max(width, int(round(source_width * scale)))
    top, left = (new_height - height) // 2, (new_width - width) // 2
    return _resized_block(image, new_height, new_width, top, left, height, width)


def per_channel(values, name, channels, positive=False):
    """mean or std as an array broadcasting over (C, H, W) or (K, C, H, W): a number, or one value per channel,
    finite (and > 0 with positive=True, as a standard deviation must be)."""
    try:
        array = np.asarray(values, np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or one number per input channel, got {values!r}") from None
    if array.size not in (1, channels):
        raise ValueError(f"{name} must be a number or {channels} values (one per input channel), got {array.size}")
    if not np.isfinite(array).all() or (positive and not (array > 0).all()):
        raise ValueError(f"{name} must hold finite numbers{' > 0' if positive else ''}, got {array.tolist()}")
    return array.reshape(-1, 1, 1)


def normalize(pixels, mean, std):
    """(C, H, W) pixels in [0, 255] -> (pixel/255 - mean) / std per channel (mean/std: numbers or per channel)."""
    channels = pixels.shape[0]
    mean, std = per_channel(mean, "mean", channels), per_channel(std, "std", channels, positive=True)
    return (np.asarray(pixels, np.float64) / 255.0 - mean) / std


def to_pil(pixels):
    """A Pillow image of (C, H, W) values in [0, 1], C = 1 or 3."""
    Image = require_pillow()
    array = np.clip(np.asarray(pixels, np.float64) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0))


def image_format(path):
    """Pillow's format for writing the file `path`, by its extension (PNG, JPEG, ...; PNG where it has none),
    else a ValueError naming the file: for checking a name before the work of making its picture."""
    Image = require_pillow()
    path = os.fspath(path)
    extension = os.path.splitext(path)[1].lower()
    if not extension:
        return "PNG"
    found = Image.registered_extensions().get(extension)
    if found is None or found not in Image.SAVE:  # unknown, or a format Pillow only reads
        raise ValueError(f"{path}: unknown image extension {extension!r} (use .png or .jpg)")
    return found


def save(image, path):
    """Write a Pillow image to `path` in the format its extension names (see image_format), atomically."""
    path = os.fspath(path)
    chosen = image_format(path)
    if chosen == "JPEG" and image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=chosen)
    except (OSError, ValueError, KeyError) as error:  # a size or mode the format cannot hold
        raise ValueError(f"{path}: Pillow cannot write this {image.width}x{image.height} picture as {chosen} "
                         f"({error}); use .png") from None
    atomic_write_bytes(path, buffer.getvalue())


def write_image(pixels, path):
    """Write (C, H, W) values in [0, 1] as an 8-bit image (PNG, JPEG, ... by the file's extension), atomically."""
    save(to_pil(pixels), path)

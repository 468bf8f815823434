"""Deterministic mutation fuzzing of nbconv's file readers.

From a valid seed file (bytes) the generators below make mutants (label, bytes): byte-level damage (bit
flips, runs of 0x00/0xFF, truncation, inserted or duplicated chunks) and format-aware damage that passes the
outer layer and hits the inner one (a zip member changed then re-zipped validly, a gzip payload changed then
recompressed, a tar archive rebuilt with hostile members, an ONNX model re-serialised with one field changed).
Every generator takes a seeded numpy Generator, so a run is reproducible from its seed.

`outcome` runs a reader on one mutant and sorts the result: "ok" (loaded and judged sane), "own" (the reader's
own error naming the file) or "defect" (anything else: another exception type, an error that does not name the
file, garbage accepted, more time than allowed).
"""
import gzip
import io
import json
import signal
import tarfile
import threading
import traceback
import warnings
import zipfile

import numpy as np

# ------------------------------------------------------------------------------------------------ bytes


def flip_bits(rng, data):
    data = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        if data:
            position = int(rng.integers(len(data)))
            data[position] ^= 1 << int(rng.integers(8))
    return bytes(data)


def set_run(rng, data):
    """A run of 1 to 64 bytes set to 0x00 or 0xFF."""
    if not data:
        return data
    start = int(rng.integers(len(data)))
    length = int(rng.integers(1, 65))
    fill = b"\x00" if rng.random() < 0.5 else b"\xff"
    return data[:start] + fill * min(length, len(data) - start) + data[start + length:]


def truncate(rng, data):
    return data[:int(rng.integers(len(data)))] if data else data


def insert_chunk(rng, data):
    """Random bytes, or a copy of a chunk of the data, inserted at a random point."""
    at = int(rng.integers(len(data) + 1))
    if data and rng.random() < 0.5:
        start = int(rng.integers(len(data)))
        chunk = data[start:start + int(rng.integers(1, 257))]
    else:
        chunk = rng.integers(0, 256, int(rng.integers(1, 65)), dtype=np.uint8).tobytes()
    return data[:at] + chunk + data[at:]


BYTE_MUTATORS = (flip_bits, set_run, truncate, insert_chunk)


def mutate_bytes(rng, data):
    """One to three byte mutations; the label names them."""
    names = []
    for _ in range(int(rng.integers(1, 4))):
        mutator = BYTE_MUTATORS[int(rng.integers(len(BYTE_MUTATORS)))]
        data = mutator(rng, data)
        names.append(mutator.__name__)
    return "+".join(names), data


# ------------------------------------------------------------------------------------------------ zip / npy


def zip_members(data):
    """{name: bytes} of a zip archive, in its order."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rezip(members, compression=zipfile.ZIP_STORED):
    """A valid zip archive (bytes) of {name: bytes}."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)
    return buffer.getvalue()


def npy_bytes(array):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=True)
    return buffer.getvalue()


def npy_with_header(header_text, body, version=1):
    """An .npy file with a hand-written header dict text (padded as numpy pads it) and `body` bytes."""
    text = header_text.encode("latin1")
    prefix_size = 10 if version == 1 else 12
    padding = -(prefix_size + len(text) + 1) % 64
    text += b" " * padding + b"\n"
    size = len(text).to_bytes(2 if version == 1 else 4, "little")
    return b"\x93NUMPY" + bytes([version, 0]) + size + text + body


def npy_header(payload):
    """(dict, body offset) of an .npy payload numpy writes."""
    version = payload[6]
    size_bytes = 2 if version == 1 else 4
    length = int.from_bytes(payload[8:8 + size_bytes], "little")
    start = 8 + size_bytes
    return eval(payload[start:start + length].decode("latin1"), {"__builtins__": {}}), start + length  # noqa: S307


HOSTILE_DESCRS = ("|O", "<f2", ">f4", "<f8", "<c8", "|V8", "<U5", "|S4", "<M8[s]", "<i8", "|b1",
                  "[('a', '<f4')]", "<f16", "bogus", "<f4")


def _hostile_npy(rng, payload):
    """An .npy payload whose header or values a writer would never produce; (label, bytes)."""
    try:
        header, offset = npy_header(payload)
    except Exception:  # noqa: BLE001 - not an npy this module wrote: damage its bytes instead
        return mutate_bytes(rng, payload)
    body = payload[offset:]
    choice = int(rng.integers(9))
    if choice == 0:
        descr = HOSTILE_DESCRS[int(rng.integers(len(HOSTILE_DESCRS)))]
        header = dict(header, descr=descr) if not descr.startswith("[") else header
        text = repr(header) if not descr.startswith("[") else repr(header).replace(repr(header["descr"]), descr)
        return f"descr={descr}", npy_with_header(text, body)
    if choice == 1:
        shapes = [(), (0,), (-1,), (2 ** 62,), (2 ** 31, 2 ** 31), (1, 1, 1, 1, 1, 1, 1, 1),
                  tuple(int(v) for v in rng.integers(1, 9, int(rng.integers(1, 5)))), (10 ** 30,)]
        shape = shapes[int(rng.integers(len(shapes)))]
        return f"shape={shape}", npy_with_header(repr(dict(header, shape=shape)), body)
    if choice == 2:
        return "fortran_order", npy_with_header(repr(dict(header, fortran_order=True)), body)
    if choice == 3:  # a header length far past the file
        prefix = b"\x93NUMPY\x02\x00" + (0xFFFFFFF0).to_bytes(4, "little")
        return "huge_header_length", prefix + payload[10:]
    if choice == 4:
        return "object_array", npy_bytes(np.array([{"a": 1}, None], dtype=object))
    if choice == 5:
        text = rng.choice(["{'descr': '<f4', 'fortran_order': False}", "{}", "[1, 2]", "__import__('os')",
                           "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}",
                           "{'descr': '<f4', 'fortran_order': 'no', 'shape': (2,)}",
                           "{'descr': '<f4', 'fortran_order': False, 'shape': (2.5,)}"])
        return "bad_header_dict", npy_with_header(str(text), body)
    if choice == 6 and header.get("descr", "").lstrip("<>=|")[:1] == "f" and body:
        dtype = np.dtype(header["descr"])
        values = np.frombuffer(body[:len(body) // dtype.itemsize * dtype.itemsize], dtype).copy()
        if values.size:
            values[int(rng.integers(values.size))] = [np.nan, np.inf, -np.inf, 3e38][int(rng.integers(4))]
            return "non_finite_value", payload[:offset] + values.tobytes()
    if choice == 7:
        return "version_3", payload[:6] + b"\x03" + payload[7:]
    return mutate_bytes(rng, payload)


JSON_VALUES = (-1, 0, 2 ** 64, -(2 ** 63), 1e308, float("nan"), "x" * 10, None, [], {}, True, [1] * 3, 1.5,
               "sgd", "adam")


def _bad_code_point(rng, payload):
    """A unicode .npy with one UCS-4 character set to a number no character has (past 0x10FFFF, or a surrogate)."""
    header, offset = npy_header(payload)
    body = bytearray(payload[offset:])
    if header.get("descr", "")[1:2] != "U" or len(body) < 4:
        return mutate_bytes(rng, payload)
    code = int(rng.choice([0x110000, 0x7F000000, 0xFFFFFFFF, 0xD800, 0xDFFF]))
    codes = np.frombuffer(bytes(body[:len(body) // 4 * 4]), "<u4" if header["descr"][0] in "<|=" else ">u4")
    letters = np.flatnonzero(((codes >= ord("a")) & (codes <= ord("z"))))  # inside JSON strings, so it parses
    at = 4 * int(rng.choice(letters) if letters.size else rng.integers(codes.size))
    body[at:at + 4] = code.to_bytes(4, "little" if header["descr"][0] in "<|=" else "big")
    return f"code_point={code:#x}", payload[:offset] + bytes(body)


def _hostile_json(rng, payload):
    """A 0-d unicode .npy holding JSON, with one value replaced (or the text damaged); (label, bytes)."""
    if rng.random() < 0.3:
        return _bad_code_point(rng, payload)
    try:
        value = json.loads(str(np.lib.format.read_array(io.BytesIO(payload))))
    except Exception:  # noqa: BLE001
        return _hostile_npy(rng, payload)
    replacement = JSON_VALUES[int(rng.integers(len(JSON_VALUES)))]
    if isinstance(value, dict) and value and rng.random() < 0.8:
        key = sorted(value)[int(rng.integers(len(value)))]
        value = dict(value, **{key: replacement})
        label = f"json[{key}]={replacement!r:.20}"
    elif isinstance(value, list) and value and isinstance(value[0], dict) and rng.random() < 0.8:
        entry = value[int(rng.integers(len(value)))]
        key = sorted(entry)[int(rng.integers(len(entry)))]
        entry[key] = replacement
        label = f"json[][{key}]={replacement!r:.20}"
    elif rng.random() < 0.5:
        value, label = "[" * 100_000 + "]" * 100_000, "deep_nesting"
        return label, npy_bytes(np.array(value))
    else:
        value, label = replacement, f"json={replacement!r:.20}"
    return label, npy_bytes(np.array(json.dumps(value)))


def zip_mutant(rng, data):
    """A zip whose layer is valid but one member's content is hostile (or a member is added, removed,
    renamed or duplicated); (label, bytes)."""
    members = zip_members(data)
    names = list(members)
    metadata = [key for key in names if "/" not in key]  # a checkpoint's text entries: half the mutants
    pool = metadata if metadata and rng.random() < 0.5 else names
    name = pool[int(rng.integers(len(pool)))]
    choice = rng.random()
    if choice < 0.08:
        del members[name]
        return f"removed:{name}", rezip(members)
    if choice < 0.14:
        members["../evil.npy" if rng.random() < 0.5 else "extra.txt"] = members[name]
        return "extra_member", rezip(members)
    if choice < 0.2:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns of the duplicate name it is asked to write
            for key, payload in list(members.items()) + [(name, members[name])]:
                archive.writestr(key, payload)
        return f"duplicate:{name}", buffer.getvalue()
    try:
        is_text = np.lib.format.read_array(io.BytesIO(members[name])).dtype.kind == "U"
    except Exception:  # noqa: BLE001
        is_text = False
    if is_text and rng.random() < 0.7:
        label, members[name] = _hostile_json(rng, members[name])
    elif rng.random() < 0.6:
        label, members[name] = _hostile_npy(rng, members[name])
    else:
        label, members[name] = mutate_bytes(rng, members[name])
    compression = [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA][
        int(rng.choice(4, p=[0.6, 0.3, 0.05, 0.05]))]
    return f"{name}:{label}", rezip(members, compression)


# ------------------------------------------------------------------------------------------------ gzip


def gzip_inner_mutant(rng, data):
    """The gzip file's payload damaged, then compressed again (valid gzip, hostile content)."""
    label, inner = mutate_bytes(rng, gzip.decompress(data))
    return f"inner:{label}", gzip.compress(inner, mtime=0)


def idx_header_mutant(rng, data):
    """An IDX payload (plain) with a hostile header: type code, dimension count or sizes."""
    data = bytearray(data)
    choice = int(rng.integers(4))
    if choice == 0:
        data[2] = int(rng.choice([0x00, 0x07, 0x0A, 0x0D, 0x0E, 0x0C, 0xFF]))
        return "type_code", bytes(data)
    if choice == 1:
        data[3] = int(rng.choice([0, 1, 2, 4, 255]))
        return "ndim", bytes(data)
    if choice == 2:
        ndim = data[3]
        axis = int(rng.integers(ndim))
        value = int(rng.choice([0, 1, 2 ** 31, 2 ** 32 - 1, 65536]))
        data[4 + 4 * axis:8 + 4 * axis] = value.to_bytes(4, "big")
        return f"dim{axis}={value}", bytes(data)
    return "magic", bytes([1]) + bytes(data[1:])


# ------------------------------------------------------------------------------------------------ tar


def tar_gz(entries, compress=True):
    """A (gzip-compressed) tar archive of [(TarInfo, bytes or None)]."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if compress else "w", format=tarfile.GNU_FORMAT) as tar:
        for info, payload in entries:
            tar.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return buffer.getvalue()


def tar_entries(data):
    """[(TarInfo, bytes or None)] of a .tar.gz."""
    entries = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar:
            entries.append((member, tar.extractfile(member).read() if member.isreg() else None))
    return entries


def tar_member_mutant(rng, data):
    """The archive rebuilt with one member made hostile: a name with '..' or absolute, a symlink or hard link,
    a device or FIFO in its place, a wrong declared size, a duplicate; (label, bytes)."""
    entries = tar_entries(data)
    index = int(rng.integers(len(entries)))
    info, payload = entries[index]
    hostile = tarfile.TarInfo(info.name)
    hostile.mtime, hostile.mode = info.mtime, info.mode
    choice = int(rng.integers(9))
    if choice == 0:
        hostile.type, hostile.linkname = tarfile.SYMTYPE, "/etc/passwd"
        entries[index], label = (hostile, None), "symlink"
    elif choice == 1:
        hostile.type, hostile.linkname = tarfile.LNKTYPE, entries[(index + 1) % len(entries)][0].name
        entries[index], label = (hostile, None), "hardlink"
    elif choice == 2:
        hostile.type, hostile.devmajor, hostile.devminor = tarfile.CHRTYPE, 1, 3
        entries[index], label = (hostile, None), "char_device"
    elif choice == 3:
        hostile.type = tarfile.FIFOTYPE
        entries[index], label = (hostile, None), "fifo"
    elif choice == 4:
        evil = tarfile.TarInfo("../../" + info.name.rsplit("/", 1)[-1])
        evil.size = len(payload or b"")
        entries.insert(index, (evil, payload))
        label = "dotdot_name"
    elif choice == 5:
        evil = tarfile.TarInfo("/tmp/" + info.name.rsplit("/", 1)[-1])
        evil.size = len(payload or b"")
        entries.insert(index, (evil, payload))
        label = "absolute_name"
    elif choice == 6 and payload is not None:
        cut = payload[:int(rng.integers(len(payload) + 1))]
        hostile.size = len(cut)
        entries[index], label = (hostile, cut), "shorter_member"
    elif choice == 7:
        entries.insert(index, entries[index])
        label = "duplicate_member"
    else:
        hostile.type = tarfile.DIRTYPE
        entries[index], label = (hostile, None), "directory"
    return f"{info.name}:{label}", tar_gz(entries)


def tar_inner_mutant(rng, data):
    """The uncompressed tar stream damaged, then compressed again."""
    label, inner = mutate_bytes(rng, gzip.decompress(data))
    return f"tar:{label}", gzip.compress(inner, mtime=0)


# ------------------------------------------------------------------------------------------------ onnx


def onnx_field_mutant(rng, data):
    """The ONNX model parsed, one field changed, serialised again; (label, bytes)."""
    import onnx
    model = onnx.load_from_string(data)
    graph = model.graph
    choice = int(rng.integers(12))
    initializers = list(graph.initializer)
    nodes = list(graph.node)
    if choice == 0 and initializers:
        tensor = initializers[int(rng.integers(len(initializers)))]
        dims = list(tensor.dims)
        options = [dims + [1], dims[:-1], [d * 2 for d in dims], [0] + dims[1:], [-1] + dims[1:], [2 ** 40] + dims[1:]]
        new = options[int(rng.integers(len(options)))]
        del tensor.dims[:]
        tensor.dims.extend(new)
        label = f"{tensor.name}.dims={new}"
    elif choice == 1 and initializers:
        tensor = initializers[int(rng.integers(len(initializers)))]
        tensor.data_type = int(rng.choice([0, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 99]))
        label = f"{tensor.name}.data_type={tensor.data_type}"
    elif choice == 2 and initializers:
        tensor = initializers[int(rng.integers(len(initializers)))]
        raw = tensor.raw_data
        cut = int(rng.integers(len(raw) + 1)) if raw else 0
        tensor.raw_data = raw[:cut] if rng.random() < 0.5 else raw + raw[:max(1, cut)]
        label = f"{tensor.name}.raw_data_length"
    elif choice == 3 and initializers:
        tensor = initializers[int(rng.integers(len(initializers)))]
        values = np.frombuffer(tensor.raw_data, np.float32).copy() if tensor.data_type == 1 else None
        if values is not None and values.size:
            values[int(rng.integers(values.size))] = [np.nan, np.inf, -np.inf][int(rng.integers(3))]
            tensor.raw_data = values.tobytes()
        label = f"{tensor.name}.non_finite"
    elif choice == 4 and nodes:
        node = nodes[int(rng.integers(len(nodes)))]
        slot = int(rng.integers(len(node.input))) if node.input else 0
        if node.input:
            node.input[slot] = "nowhere"
        label = f"{node.name}.input[{slot}]=nowhere"
    elif choice == 5 and nodes:
        node = nodes[int(rng.integers(len(nodes)))]
        attributes = list(node.attribute)
        if attributes:
            attribute = attributes[int(rng.integers(len(attributes)))]
            kinds = [onnx.AttributeProto.FLOAT, onnx.AttributeProto.INT, onnx.AttributeProto.STRING,
                     onnx.AttributeProto.INTS, onnx.AttributeProto.FLOATS, onnx.AttributeProto.TENSOR,
                     onnx.AttributeProto.GRAPH, onnx.AttributeProto.STRINGS, 0]
            attribute.type = kinds[int(rng.integers(len(kinds)))]
            label = f"{node.name}.{attribute.name}.type={attribute.type}"
        else:
            label = "no_attribute"
    elif choice == 6 and nodes:
        node = nodes[int(rng.integers(len(nodes)))]
        attributes = [a for a in node.attribute if a.ints or a.type == onnx.AttributeProto.INT]
        if attributes:
            attribute = attributes[int(rng.integers(len(attributes)))]
            value = int(rng.choice([0, -1, -5, 2 ** 31, 2 ** 62, 3]))
            if attribute.ints:
                attribute.ints[int(rng.integers(len(attribute.ints)))] = value
            else:
                attribute.i = value
            label = f"{node.name}.{attribute.name}={value}"
        else:
            label = "no_int_attribute"
    elif choice == 7:
        dims = graph.input[0].type.tensor_type.shape.dim
        axis = int(rng.integers(len(dims)))
        value = int(rng.choice([0, -3, 1, 2 ** 31, 2 ** 62, 7]))
        dims[axis].dim_value = value
        label = f"input.dim{axis}={value}"
    elif choice == 8 and nodes:
        node = nodes[int(rng.integers(len(nodes)))]
        node.op_type = str(rng.choice(["Conv", "Relu", "MaxPool", "Gemm", "Loop", "Softmax", "Nope", "Add"]))
        label = f"{node.name}.op_type={node.op_type}"
    elif choice == 9 and initializers:
        tensor = initializers[int(rng.integers(len(initializers)))]
        tensor.data_location = onnx.TensorProto.EXTERNAL
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", str(rng.choice(["../../etc/passwd", "/etc/passwd", "missing.bin",
                                                             "", "."]))
        label = f"{tensor.name}.external={entry.value}"
    elif choice == 10:
        model.opset_import[0].version = int(rng.choice([0, 1, 6, 99, 2 ** 40]))
        label = f"opset={model.opset_import[0].version}"
    else:
        if nodes:
            node = nodes[int(rng.integers(len(nodes)))]
            node.output[0] = graph.output[0].name if rng.random() < 0.5 else "dangling"
            label = f"{node.name}.output={node.output[0]}"
        else:
            label = "unchanged"
    return label, model.SerializeToString()


# ------------------------------------------------------------------------------------------------ running


class Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise Timeout()


def _utf8(text):
    """Whether `text` can be written to a UTF-8 terminal or log (lone surrogates cannot)."""
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def outcome(read, path, own_errors, sane=None, seconds=20, names=None):
    """("ok" | "own" | "defect", detail) of read(path) on one mutant.

    The time limit needs SIGALRM and the main thread (elsewhere the reader runs without one).
    own: an exception of `own_errors` whose message names `path` (or `names`: the folder of the files a
    reader makes from it, such as an archive's members) and is UTF-8 text; ok: read returned and sane(result) is
    true (or None); defect: anything else, with the traceback's last lines."""
    timed = hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
    if timed:
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(seconds)
    try:
        result = read(path)
    except Timeout:
        return "defect", f"no answer within {seconds} s"
    except own_errors as error:
        message = str(error)
        if str(names or path) in message and _utf8(message):
            return "own", f"{type(error).__name__}: {message[:200]}"
        if not _utf8(message):
            return "defect", f"{type(error).__name__} whose message is no UTF-8 text: {ascii(message)[:300]}"
        return "defect", f"{type(error).__name__} without the file's name: {str(error)[:300]}\n" + \
            "".join(traceback.format_exc().splitlines(True)[-6:])
    except Exception as error:  # noqa: BLE001 - anything else is what the fuzzing looks for
        return "defect", f"{type(error).__name__}: {str(error)[:300]}\n" + \
            "".join(traceback.format_exc().splitlines(True)[-8:])
    finally:
        if timed:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
    problem = sane(result) if sane is not None else None
    if problem:
        return "defect", f"loaded but not sane: {problem}"
    return "ok", "loaded"

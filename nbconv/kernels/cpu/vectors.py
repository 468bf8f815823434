"""Values of 8 lanes that compiled code holds in vector registers: Numba locals of type Vector are LLVM
`<8 x float>` (or `<8 x double>`) values, so a handful of them, updated in a loop, stay in registers.

Numba has no vector type of its own, and a small numpy array in a loop lives in memory (each update a load
and a store); these make register blocking possible: a kernel keeps e.g. 8 accumulators as 8 Vector locals.
Loads and stores read and write 8 consecutive values of a C-contiguous array, the index counting values from
its first (a flat index, whatever the array's dimensions); callers guarantee that they lie inside it,
nothing is checked here. Multiply-adds use llvm.fmuladd, a fused multiply-add instruction
where the CPU has one.

Each routine is one vector operation; the loops around them stay in Python (register_blocks.py,
vector_blocks.py, conv/blocked.py). Most Vectors have LANES lanes; load_pairs gives narrower ones for short
rows, and splat/ramp give int64 Vectors (positions) as wide as a float one.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

LANES = 8  # one 256-bit register of float32 (two of float64)


class Vector(types.Type):
    """`lanes` values of one dtype (LANES unless a routine says otherwise), held as one LLVM vector value."""

    def __init__(self, dtype, lanes=LANES):
        self.dtype = dtype
        self.lanes = lanes
        super().__init__(name=f"Vector({dtype})" if lanes == LANES else f"Vector({dtype}, {lanes})")


@register_model(Vector)
class VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(dmm.lookup(fe_type.dtype).get_value_type(), fe_type.lanes))


def _pointer(context, builder, array_type, array, index, vector_type):
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [index]), vector_type.as_pointer())


def _element_align(context, dtype):
    return context.get_abi_sizeof(context.get_data_type(dtype))


@intrinsic
def zeros(typingctx, like):
    """A Vector of zeros of `like`'s dtype (like: an array)."""
    vector = Vector(like.dtype)

    def codegen(context, builder, signature, args):
        return ir.Constant(context.get_value_type(vector), None)

    return vector(like), codegen


@intrinsic
def load(typingctx, array, index):
    """array[index:index + 8] as a Vector (a flat array)."""
    vector = Vector(array.dtype)

    def codegen(context, builder, signature, args):
        llvm_type = context.get_value_type(vector)
        pointer = _pointer(context, builder, signature.args[0], args[0], args[1], llvm_type)
        return builder.load(pointer, align=_element_align(context, array.dtype))

    return vector(array, index), codegen


@intrinsic
def broadcast(typingctx, array, index):
    """array[index] in every lane (a flat array; one broadcast load, no check of the index)."""
    vector = Vector(array.dtype)

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        scalar = builder.load(builder.gep(data, [args[1]]), align=_element_align(context, array.dtype))
        llvm_type = context.get_value_type(vector)
        value = ir.Constant(llvm_type, None)
        for lane in range(LANES):
            value = builder.insert_element(value, scalar, ir.Constant(ir.IntType(32), lane))
        return value

    return vector(array, index), codegen


@intrinsic
def store(typingctx, array, index, value):
    """array[index:index + lanes] = value (a flat array of the Vector's dtype)."""
    if not isinstance(value, Vector) or value.dtype != array.dtype:
        return None

    def codegen(context, builder, signature, args):
        llvm_type = context.get_value_type(signature.args[2])
        pointer = _pointer(context, builder, signature.args[0], args[0], args[1], llvm_type)
        builder.store(args[2], pointer, align=_element_align(context, array.dtype))
        return context.get_dummy_value()

    return types.void(array, index, value), codegen


def _fmuladd(builder, a, b, c):
    element = "f32" if a.type.element == ir.FloatType() else "f64"
    name = f"llvm.fmuladd.v{LANES}{element}"
    function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(a.type, [a.type] * 3), name)
    return builder.call(function, [a, b, c])


@intrinsic
def add_product(typingctx, total, value, scalar):
    """total + value * scalar (scalar broadcast to every lane), one fused multiply-add."""
    def codegen(context, builder, signature, args):
        total_value, vector_value, scalar_value = args
        scalar_value = context.cast(builder, scalar_value, signature.args[2], signature.args[0].dtype)
        broadcast = ir.Constant(vector_value.type, None)
        for lane in range(LANES):
            broadcast = builder.insert_element(broadcast, scalar_value, ir.Constant(ir.IntType(32), lane))
        return _fmuladd(builder, vector_value, broadcast, total_value)

    return total(total, value, scalar), codegen


@intrinsic
def add_products(typingctx, total, value, other):
    """total + value * other, lane by lane, one fused multiply-add."""
    def codegen(context, builder, signature, args):
        return _fmuladd(builder, args[1], args[2], args[0])

    return total(total, value, other), codegen


def _mask(lanes):
    lanes = list(lanes)
    return ir.Constant(ir.VectorType(ir.IntType(32), len(lanes)), lanes)


@intrinsic
def lane_sum(typingctx, value):
    """The sum of a Vector's lanes (pairwise: lanes 0-3 + 4-7, then halves again)."""
    def codegen(context, builder, signature, args):
        vector = args[0]
        width = value.lanes
        while width > 1:
            width //= 2
            low = builder.shuffle_vector(vector, vector, _mask(range(width)))
            high = builder.shuffle_vector(vector, vector, _mask(range(width, 2 * width)))
            vector = builder.fadd(low, high)
        return builder.extract_element(vector, ir.Constant(ir.IntType(32), 0))

    return value.dtype(value), codegen


def _splat(builder, scalar, vector_type):
    single = builder.insert_element(ir.Constant(vector_type, ir.Undefined), scalar, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(single, single, _mask([0] * vector_type.count))


def _is_float(vector):
    return isinstance(vector.dtype, types.Float)


@intrinsic
def add(typingctx, value, other):
    """value + other, lane by lane (two Vectors of one type)."""
    if not isinstance(value, Vector) or value != other:
        return None

    def codegen(context, builder, signature, args):
        return (builder.fadd if _is_float(value) else builder.add)(args[0], args[1])

    return value(value, other), codegen


@intrinsic
def maximum(typingctx, value, other):
    """max(value, other), lane by lane, as Numba's max() gives it: other where other > value, else value (so a
    NaN in value is kept, one in other is not)."""
    if not isinstance(value, Vector) or value != other or not _is_float(value):
        return None

    def codegen(context, builder, signature, args):
        return builder.select(builder.fcmp_ordered(">", args[1], args[0]), args[1], args[0])

    return value(value, other), codegen


@intrinsic
def load_pairs(typingctx, array, index, lanes):
    """(array[index], array[index + 2], ...), (array[index + 1], array[index + 3], ...): the even and the odd
    values of array[index:index + 2*lanes] as two Vectors of `lanes` lanes (a flat array; lanes a constant)."""
    if not isinstance(lanes, types.IntegerLiteral):
        return None
    count = lanes.literal_value
    vector = Vector(array.dtype, count)

    def codegen(context, builder, signature, args):
        element = context.get_data_type(array.dtype)
        pointer = _pointer(context, builder, signature.args[0], args[0], args[1], ir.VectorType(element, 2 * count))
        values = builder.load(pointer, align=_element_align(context, array.dtype))
        even = builder.shuffle_vector(values, values, _mask(range(0, 2 * count, 2)))
        odd = builder.shuffle_vector(values, values, _mask(range(1, 2 * count, 2)))
        return context.make_tuple(builder, signature.return_type, [even, odd])

    return types.UniTuple(vector, 2)(array, index, lanes), codegen


@intrinsic
def any_nan(typingctx, value, other):
    """1 when any lane of value or of other is NaN, else 0 (an int64)."""
    if not isinstance(value, Vector) or value != other or not _is_float(value):
        return None

    def codegen(context, builder, signature, args):
        unordered = builder.fcmp_unordered("uno", args[0], args[1])
        flags = builder.extract_element(unordered, ir.Constant(ir.IntType(32), 0))
        for lane in range(1, value.lanes):
            flags = builder.or_(flags, builder.extract_element(unordered, ir.Constant(ir.IntType(32), lane)))
        return builder.zext(flags, ir.IntType(64))

    return types.int64(value, other), codegen


@intrinsic
def splat(typingctx, scalar, like):
    """scalar in every lane of a Vector as wide as `like` (a Vector); an integer scalar gives int64 lanes."""
    if not isinstance(like, Vector) or not isinstance(scalar, (types.Integer, types.Float)):
        return None
    dtype = types.int64 if isinstance(scalar, types.Integer) else types.unliteral(scalar)
    vector = Vector(dtype, like.lanes)

    def codegen(context, builder, signature, args):
        value = context.cast(builder, args[0], signature.args[0], dtype)
        return _splat(builder, value, context.get_value_type(vector))

    return vector(scalar, like), codegen


@intrinsic
def ramp(typingctx, start, step, like):
    """start + k*step in lane k, int64, as wide as `like` (a Vector)."""
    if not isinstance(like, Vector) or not isinstance(start, types.Integer) or not isinstance(step, types.Integer):
        return None
    vector = Vector(types.int64, like.lanes)

    def codegen(context, builder, signature, args):
        llvm_type = context.get_value_type(vector)
        first = _splat(builder, context.cast(builder, args[0], signature.args[0], types.int64), llvm_type)
        steps = _splat(builder, context.cast(builder, args[1], signature.args[1], types.int64), llvm_type)
        counts = ir.Constant(llvm_type, [ir.Constant(ir.IntType(64), k) for k in range(like.lanes)])
        return builder.add(first, builder.mul(steps, counts))

    return vector(start, step, like), codegen


@intrinsic
def select_equal(typingctx, value, other, if_equal, otherwise):
    """if_equal's lane where value == other (ordered), otherwise's elsewhere (value, other: Vectors of one type;
    if_equal, otherwise: Vectors of one type, as wide)."""
    if (not isinstance(value, Vector) or value != other or not isinstance(if_equal, Vector)
            or if_equal != otherwise or if_equal.lanes != value.lanes):
        return None

    def codegen(context, builder, signature, args):
        compare = builder.fcmp_ordered if _is_float(value) else builder.icmp_signed
        return builder.select(compare("==", args[0], args[1]), args[2], args[3])

    return if_equal(value, other, if_equal, otherwise), codegen


@intrinsic
def from_lane(typingctx, value, first):
    """value with lanes below `first` set to zero."""
    if not isinstance(value, Vector) or not isinstance(first, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        llvm_type = args[0].type
        index_type = ir.VectorType(ir.IntType(64), value.lanes)
        firsts = _splat(builder, context.cast(builder, args[1], signature.args[1], types.int64), index_type)
        lanes = ir.Constant(index_type, [ir.Constant(ir.IntType(64), k) for k in range(value.lanes)])
        return builder.select(builder.icmp_signed(">=", lanes, firsts), args[0], ir.Constant(llvm_type, None))

    return value(value, first), codegen

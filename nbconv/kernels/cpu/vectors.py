"""Values of 8 lanes that compiled code holds in vector registers: Numba locals of type Vector are LLVM
`<8 x float>` (or `<8 x double>`) values, so a handful of them, updated in a loop, stay in registers.

Numba has no vector type of its own, and a small numpy array in a loop lives in memory (each update a load
and a store); these make register blocking possible: a kernel keeps e.g. 8 accumulators as 8 Vector locals.
Loads and stores read and write 8 consecutive values of a flat C-contiguous array; callers guarantee that they
lie inside it, nothing is checked here. Multiply-adds use llvm.fmuladd, a fused multiply-add instruction
where the CPU has one.

Wide vectors (`wide_zeros`, `wide_load`, `wide_broadcast`) hold WIDE_LANES values: 16 (one 512-bit register of
float32) where the CPU the kernels compile for has AVX-512, else 8 like the others. The operations below take
either width (both operands of one width). On a CPU that runs 512-bit instructions as two 256-bit halves (AMD
Zen 4) a wide multiply-add does the same arithmetic as two narrow ones in one instruction, which helps a
micro-kernel bound by the instructions it issues (packed_windows': 1.16-1.21x on ResNet-50's layers,
benchmarks/NOTES.md, section 93). A wide float64 vector takes two 512-bit registers.
"""
import llvmlite.binding as llvm
import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

LANES = 8  # one 256-bit register of float32 (two of float64)


def vector_registers():
    """How many vector registers the CPU the kernels compile for has: 32 with AVX-512 (whose VL extension gives
    256-bit code all 32), else 16. The host's, unless NUMBA_CPU_NAME or NUMBA_CPU_FEATURES name another CPU: then
    32 only where the named features include +avx512vl (a CPU named without features counts as 16)."""
    features = numba.config.CPU_FEATURES
    if features is None:
        if numba.config.CPU_NAME is not None:
            return 16
        return 32 if llvm.get_host_cpu_features().get("avx512vl", False) else 16
    return 32 if "+avx512vl" in features.split(",") else 16


REGISTERS = vector_registers()


def wide_vector_lanes():
    """WIDE_LANES for the CPU the kernels compile for: 16 where it has AVX-512 (32 vector registers, see
    vector_registers), else LANES."""
    return 16 if REGISTERS >= 32 else LANES


WIDE_LANES = wide_vector_lanes()


class Vector(types.Type):
    """`lanes` values of one floating-point dtype, held as one LLVM vector value."""

    def __init__(self, dtype, lanes=LANES):
        self.dtype, self.lanes = dtype, lanes
        super().__init__(name=f"Vector({dtype}, {lanes})")


@register_model(Vector)
class VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(dmm.lookup(fe_type.dtype).get_value_type(), fe_type.lanes))


def _pointer(context, builder, array_type, array, index, vector_type):
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [index]), vector_type.as_pointer())


def _element_align(context, dtype):
    return context.get_abi_sizeof(context.get_data_type(dtype))


def _intrinsic(name, lanes, doc):
    """The intrinsic `name` ('zeros', 'load' or 'broadcast') making Vectors of `lanes` lanes."""
    def zeros(typingctx, like):
        vector = Vector(like.dtype, lanes)

        def codegen(context, builder, signature, args):
            return ir.Constant(context.get_value_type(vector), None)

        return vector(like), codegen

    def load(typingctx, array, index):
        vector = Vector(array.dtype, lanes)

        def codegen(context, builder, signature, args):
            llvm_type = context.get_value_type(vector)
            pointer = _pointer(context, builder, signature.args[0], args[0], args[1], llvm_type)
            return builder.load(pointer, align=_element_align(context, array.dtype))

        return vector(array, index), codegen

    def broadcast(typingctx, array, index):
        vector = Vector(array.dtype, lanes)

        def codegen(context, builder, signature, args):
            data = context.make_array(signature.args[0])(context, builder, args[0]).data
            scalar = builder.load(builder.gep(data, [args[1]]), align=_element_align(context, array.dtype))
            return _splat(builder, context.get_value_type(vector), scalar)

        return vector(array, index), codegen

    typer = {"zeros": zeros, "load": load, "broadcast": broadcast}[name]
    typer.__name__ = typer.__qualname__ = name if lanes == LANES else "wide_" + name
    typer.__doc__ = doc
    return intrinsic(typer)


def _splat(builder, vector_type, scalar):
    value = ir.Constant(vector_type, None)
    for lane in range(vector_type.count):
        value = builder.insert_element(value, scalar, ir.Constant(ir.IntType(32), lane))
    return value


zeros = _intrinsic("zeros", LANES, """A Vector of zeros of `like`'s dtype (like: an array).""")
load = _intrinsic("load", LANES, """array[index:index + LANES] as a Vector (a flat array).""")
broadcast = _intrinsic("broadcast", LANES,
                       """array[index] in every lane (a flat array; one broadcast load, no check of the index).""")
wide_zeros = _intrinsic("zeros", WIDE_LANES, """zeros, WIDE_LANES wide.""")
wide_load = _intrinsic("load", WIDE_LANES, """array[index:index + WIDE_LANES] as a wide Vector (a flat array).""")
wide_broadcast = _intrinsic("broadcast", WIDE_LANES, """array[index] in every lane of a wide Vector (a flat array).""")


@intrinsic
def store(typingctx, array, index, value):
    """array[index:index + the value's lanes] = value (a flat array)."""
    def codegen(context, builder, signature, args):
        llvm_type = context.get_value_type(signature.args[2])
        pointer = _pointer(context, builder, signature.args[0], args[0], args[1], llvm_type)
        builder.store(args[2], pointer, align=_element_align(context, array.dtype))
        return context.get_dummy_value()

    return types.void(array, index, value), codegen


@intrinsic
def prefetch(typingctx, array, index):
    """Asks the CPU to bring the cache line of array[index] into its caches, for a read soon (a flat array; the
    index may lie past its end: a prefetch never faults)."""
    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        pointer = builder.bitcast(builder.gep(data, [args[1]]), ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [pointer.type, i32, i32, i32]), "llvm.prefetch.p0")
        # read (0), keep in every level (3), data cache (1)
        builder.call(function, [pointer, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(array, index), codegen


def _fmuladd(builder, a, b, c):
    element = "f32" if a.type.element == ir.FloatType() else "f64"
    name = f"llvm.fmuladd.v{a.type.count}{element}"
    function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(a.type, [a.type] * 3), name)
    return builder.call(function, [a, b, c])


@intrinsic
def add_product(typingctx, total, value, scalar):
    """total + value * scalar (scalar broadcast to every lane), one fused multiply-add."""
    def codegen(context, builder, signature, args):
        total_value, vector_value, scalar_value = args
        scalar_value = context.cast(builder, scalar_value, signature.args[2], signature.args[0].dtype)
        return _fmuladd(builder, vector_value, _splat(builder, vector_value.type, scalar_value), total_value)

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
        width = vector.type.count
        while width > 1:
            width //= 2
            low = builder.shuffle_vector(vector, vector, _mask(range(width)))
            high = builder.shuffle_vector(vector, vector, _mask(range(width, 2 * width)))
            vector = builder.fadd(low, high)
        return builder.extract_element(vector, ir.Constant(ir.IntType(32), 0))

    return value.dtype(value), codegen


@intrinsic
def multiply(typingctx, first, second):
    """first * second, lane by lane (rounded once, as the scalar product; not fused with a later add)."""
    def codegen(context, builder, signature, args):
        return builder.fmul(args[0], args[1])

    return first(first, second), codegen


@intrinsic
def add(typingctx, first, second):
    """first + second, lane by lane."""
    def codegen(context, builder, signature, args):
        return builder.fadd(args[0], args[1])

    return first(first, second), codegen


def _clamped_below(builder, vector):
    zero = ir.Constant(vector.type, None)
    return builder.select(builder.fcmp_ordered("<=", vector, zero), zero, vector)  # NaN fails: passes through


@intrinsic
def relu(typingctx, value):
    """0 where a lane is <= 0, else the lane (NaN stays NaN), as the ReLU kernels compute it."""
    def codegen(context, builder, signature, args):
        return _clamped_below(builder, args[0])

    return value(value), codegen


@intrinsic
def relu6(typingctx, value):
    """0 where a lane is <= 0, 6 where it is >= 6, else the lane (NaN stays NaN)."""
    def codegen(context, builder, signature, args):
        vector = _clamped_below(builder, args[0])
        six = ir.Constant(vector.type, [ir.Constant(vector.type.element, 6.0)] * vector.type.count)
        return builder.select(builder.fcmp_ordered(">=", vector, six), six, vector)

    return value(value), codegen

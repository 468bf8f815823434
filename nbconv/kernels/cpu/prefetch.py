"""A hint to the CPU to start reading a cache line that compiled code will read soon (llvm.prefetch): no
result, no fault, whatever the address; a kernel whose operand streams from memory in an order the hardware
prefetchers do not run far enough ahead of uses it to hide the memory's latency."""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_READ = 0
_TO_L2 = 2  # llvm.prefetch's locality: 3 keeps the line in every level (prefetcht0), 2 from L2 out (prefetcht1)
_DATA = 1


@intrinsic
def prefetch_to_l2(typingctx, array, index):
    """Start reading the cache line of array[index] (a flat array; the index need not lie inside it) into L2."""

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        pointer = builder.bitcast(builder.gep(data, [args[1]]), ir.IntType(8).as_pointer())
        int32 = ir.IntType(32)
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [pointer.type, int32, int32, int32]), "llvm.prefetch.p0i8")
        builder.call(function, [pointer, ir.Constant(int32, _READ), ir.Constant(int32, _TO_L2),
                                ir.Constant(int32, _DATA)])
        return context.get_dummy_value()

    return types.void(array, types.intp), codegen

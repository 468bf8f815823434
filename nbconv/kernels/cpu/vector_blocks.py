"""Moves of one fixed block of 8 array values, which LLVM emits as single 256-bit vector instructions.

A copy loop of 8 values through Numba slices or indices is not vectorised (each index may be negative,
and each slice normalises its bounds): measured 8x slower than these on LeNet-5's unrolling. Callers
guarantee that both blocks lie inside their (flat, C-contiguous) arrays; nothing is checked here.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

BLOCK = 8  # values a block move covers


def _element_pointer(context, builder, array_type, array, index):
    return builder.gep(context.make_array(array_type)(context, builder, array).data, [index])


@intrinsic
def copy_block(typingctx, target, target_start, source, source_start):
    """target[target_start:target_start + 8] = source[source_start:source_start + 8] (flat arrays)."""
    signature = types.void(target, target_start, source, source_start)

    def codegen(context, builder, signature, args):
        target_value, target_index, source_value, source_index = args
        itemsize = context.get_abi_sizeof(context.get_data_type(signature.args[0].dtype))
        cgutils.raw_memcpy(builder, _element_pointer(context, builder, signature.args[0], target_value, target_index),
                           _element_pointer(context, builder, signature.args[2], source_value, source_index),
                           context.get_constant(types.intp, BLOCK), itemsize)
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def add_block(typingctx, target, target_start, source, source_start):
    """target[target_start:target_start + 8] += source[source_start:source_start + 8] (flat arrays)."""
    signature = types.void(target, target_start, source, source_start)

    def codegen(context, builder, signature, args):
        target_value, target_index, source_value, source_index = args
        element = context.get_data_type(signature.args[0].dtype)
        vector = ir.VectorType(element, BLOCK)
        align = context.get_abi_sizeof(element)
        target_pointer = builder.bitcast(
            _element_pointer(context, builder, signature.args[0], target_value, target_index), vector.as_pointer())
        source_pointer = builder.bitcast(
            _element_pointer(context, builder, signature.args[2], source_value, source_index), vector.as_pointer())
        total = builder.fadd(builder.load(target_pointer, align=align), builder.load(source_pointer, align=align))
        builder.store(total, target_pointer, align=align)
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def add_block_from(typingctx, target, target_start, source, source_start, skip):
    """target[target_start + k] += source[source_start + k] for skip <= k < 8 (flat arrays; all 8 values of
    both blocks are read, the first `skip` target values are written back unchanged)."""
    signature = types.void(target, target_start, source, source_start, skip)

    def codegen(context, builder, signature, args):
        target_value, target_index, source_value, source_index, skip_value = args
        element = context.get_data_type(signature.args[0].dtype)
        vector = ir.VectorType(element, BLOCK)
        align = context.get_abi_sizeof(element)
        target_pointer = builder.bitcast(
            _element_pointer(context, builder, signature.args[0], target_value, target_index), vector.as_pointer())
        source_pointer = builder.bitcast(
            _element_pointer(context, builder, signature.args[2], source_value, source_index), vector.as_pointer())
        lanes = ir.Constant(ir.VectorType(skip_value.type, BLOCK), [ir.Constant(skip_value.type, k) for k in range(BLOCK)])
        first = builder.insert_element(ir.Constant(ir.VectorType(skip_value.type, BLOCK), ir.Undefined),
                                       skip_value, ir.Constant(ir.IntType(32), 0))
        skips = builder.shuffle_vector(first, first, ir.Constant(ir.VectorType(ir.IntType(32), BLOCK), [0] * BLOCK))
        added = builder.select(builder.icmp_signed(">=", lanes, skips), builder.load(source_pointer, align=align),
                               ir.Constant(vector, [ir.Constant(element, 0.0)] * BLOCK))
        total = builder.fadd(builder.load(target_pointer, align=align), added)
        builder.store(total, target_pointer, align=align)
        return context.get_dummy_value()

    return signature, codegen

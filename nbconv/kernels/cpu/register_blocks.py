"""Sums over a convolution's taps kept in vector registers until the last tap.

The loops LLVM vectorises by itself run tap by tap over a whole output row, so every tap (or every few
taps) loads and stores the row again: for LeNet-5's first layer (25 taps, 6 channels) that is more memory
traffic than arithmetic. `tap_sums_2x32` and `tap_sums_1x32` instead hold 32 consecutive outputs of 2
channels (or 1) in registers, add one multiply-add per tap to each, and store them once: four loads of the
image and 2 (or 1) of the weights per tap for 8 (or 4) vector multiply-adds.

Callers guarantee that every value read and written lies inside its (flat, C-contiguous) array; nothing is
checked here. Each output is summed over the taps in order 0, 1, ..., taps - 1 with fused multiply-adds, so
its value does not depend on the block or on the thread that computes it.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 8  # values a vector holds
VECTORS = 4  # vectors per channel in one block: 32 outputs (2 channels x 4 vectors: 8 independent sums, as
# many as two multiply-add units with a latency of 4 cycles keep busy; 2x16 and 3x16 ran 10-15% slower, 3x32 50%)
WIDTH = LANES * VECTORS


def _data(context, builder, array_type, array):
    return context.make_array(array_type)(context, builder, array).data


def _make_tap_sums(channels, vectors=VECTORS):
    """An intrinsic computing a block of `channels` channels x `vectors` * LANES outputs (module docstring)."""

    def tap_sums(typingctx, output, output_start, output_stride, image, image_start, starts, weights,
                 weight_start, taps):
        signature = types.void(output, output_start, output_stride, image, image_start, starts, weights,
                               weight_start, taps)

        def codegen(context, builder, signature, args):
            (output_value, output_start_value, output_stride_value, image_value, image_start_value, starts_value,
             weights_value, weight_start_value, taps_value) = args
            intp = context.get_value_type(types.intp)

            def index(position):
                return context.cast(builder, args[position], signature.args[position], types.intp)

            output_start, output_stride = index(1), index(2)
            image_start, weight_start, taps_count = index(4), index(7), index(8)
            element = context.get_data_type(signature.args[0].dtype)
            vector = ir.VectorType(element, LANES)
            align = context.get_abi_sizeof(element)
            output_data = _data(context, builder, signature.args[0], output_value)
            image_data = _data(context, builder, signature.args[3], image_value)
            starts_data = _data(context, builder, signature.args[5], starts_value)
            weights_data = _data(context, builder, signature.args[6], weights_value)
            start_type = context.get_data_type(signature.args[5].dtype)
            zero = ir.Constant(vector, [ir.Constant(element, 0.0)] * LANES)
            fma_name = f"llvm.fma.v{LANES}f{'32' if element == ir.FloatType() else '64'}"
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector] * 3), fma_name)
            splat_mask = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)

            def constant(value):
                return ir.Constant(intp, value)

            entry = builder.basic_block
            loop = builder.append_basic_block("taps")
            done = builder.append_basic_block("taps_done")
            builder.cbranch(builder.icmp_signed(">", taps_count, constant(0)), loop, done)

            builder.position_at_end(loop)
            tap = builder.phi(intp)
            tap.add_incoming(constant(0), entry)
            sums = []
            for _ in range(channels * vectors):
                phi = builder.phi(vector)
                phi.add_incoming(zero, entry)
                sums.append(phi)
            start = builder.load(builder.gep(starts_data, [tap]))
            if start_type != intp:
                start = builder.sext(start, intp) if start_type.width < intp.width else builder.trunc(start, intp)
            base = builder.add(image_start, start)
            pixels = [builder.load(builder.bitcast(builder.gep(image_data, [builder.add(base, constant(LANES * v))]),
                                                   vector.as_pointer()), align=align) for v in range(vectors)]
            updated = []
            for channel in range(channels):
                where = builder.add(weight_start, builder.add(builder.mul(constant(channel), taps_count), tap))
                weight = builder.load(builder.gep(weights_data, [where]))
                first = builder.insert_element(ir.Constant(vector, ir.Undefined), weight, ir.Constant(ir.IntType(32), 0))
                weights_vector = builder.shuffle_vector(first, first, splat_mask)
                for v in range(vectors):
                    updated.append(builder.call(fma, [weights_vector, pixels[v], sums[channel * vectors + v]]))
            next_tap = builder.add(tap, constant(1))
            tap.add_incoming(next_tap, loop)
            for phi, value in zip(sums, updated):
                phi.add_incoming(value, loop)
            builder.cbranch(builder.icmp_signed("<", next_tap, taps_count), loop, done)

            builder.position_at_end(done)
            results = []  # every phi first: LLVM wants them at the top of the block
            for value in updated:
                result = builder.phi(vector)
                result.add_incoming(zero, entry)
                result.add_incoming(value, loop)
                results.append(result)
            for channel in range(channels):
                row = builder.add(output_start, builder.mul(constant(channel), output_stride))
                for v in range(vectors):
                    result = results[channel * vectors + v]
                    pointer = builder.gep(output_data, [builder.add(row, constant(LANES * v))])
                    builder.store(result, builder.bitcast(pointer, vector.as_pointer()), align=align)
            return context.get_dummy_value()

        return signature, codegen

    tap_sums.__name__ = f"tap_sums_{channels}x{LANES * vectors}"
    tap_sums.__doc__ = (f"output[output_start + c*output_stride + k] = sum over t < taps of weights[weight_start + "
                        f"c*taps + t] * image[image_start + starts[t] + k], for c < {channels}, k < {LANES * vectors}.")
    return intrinsic(tap_sums)


tap_sums_2x32 = _make_tap_sums(2)
tap_sums_1x32 = _make_tap_sums(1)


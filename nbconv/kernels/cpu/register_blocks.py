"""Sums over a convolution's taps kept in vector registers until the last tap.

The loops LLVM vectorises by itself run tap by tap over a whole output row, so every tap (or every few
taps) loads and stores the row again: for LeNet-5's first layer (25 taps, 6 channels) that is more memory
traffic than arithmetic. `tap_sums_2x32` and `tap_sums_1x32` instead hold 32 consecutive outputs of 2
channels (or 1) in registers, add one multiply-add per tap to each, and store them once: four loads of the
image and 2 (or 1) of the weights per tap for 8 (or 4) vector multiply-adds. Their `row_` variants take one
output row of up to 32 values, read and written where it lies (no Wp-wide copy to compact or spread).

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


def _make_tap_sums(channels, vectors=VECTORS, row=False):
    """An intrinsic computing a block of `channels` channels x `vectors` * LANES outputs (module docstring).
    With `row`, the block is one output row's `columns` values (LANES <= columns <= vectors * LANES), written
    where they belong with the bias added: vectors past the row's end are moved back to end with it, so they
    overlap the one before and store the same values twice."""

    def codegen(context, builder, signature, args):
        output_value, image_value, starts_value, weights_value = args[0], args[3], args[5], args[6]
        intp = context.get_value_type(types.intp)

        def index(position):
            return context.cast(builder, args[position], signature.args[position], types.intp)

        def constant(value):
            return ir.Constant(intp, value)

        output_start, output_stride = index(1), index(2)
        image_start, weight_start, taps_count = index(4), index(7), index(8)
        if row:  # vector v at column min(v * LANES, columns - LANES) of the row
            last_column = builder.sub(index(9), constant(LANES))
            offsets = [builder.select(builder.icmp_signed("<", constant(LANES * v), last_column),
                                      constant(LANES * v), last_column) for v in range(vectors)]
        else:
            offsets = [constant(LANES * v) for v in range(vectors)]
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

        def splat(value):
            first = builder.insert_element(ir.Constant(vector, ir.Undefined), value,
                                           ir.Constant(ir.IntType(32), 0))
            return builder.shuffle_vector(first, first, splat_mask)

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
        pixels = [builder.load(builder.bitcast(builder.gep(image_data, [builder.add(base, offsets[v])]),
                                               vector.as_pointer()), align=align) for v in range(vectors)]
        updated = []
        for channel in range(channels):
            where = builder.add(weight_start, builder.add(builder.mul(constant(channel), taps_count), tap))
            weights_vector = splat(builder.load(builder.gep(weights_data, [where])))
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
        if row:
            bias_data = _data(context, builder, signature.args[10], args[10])
            bias_start = index(11)
        for channel in range(channels):
            row_start = builder.add(output_start, builder.mul(constant(channel), output_stride))
            if row:
                bias = splat(builder.load(builder.gep(bias_data, [builder.add(bias_start, constant(channel))])))
            for v in range(vectors):
                result = results[channel * vectors + v]
                if row:
                    result = builder.fadd(result, bias)
                pointer = builder.gep(output_data, [builder.add(row_start, offsets[v])])
                builder.store(result, builder.bitcast(pointer, vector.as_pointer()), align=align)
        return context.get_dummy_value()

    if row:
        def tap_sums(typingctx, output, output_start, output_stride, image, image_start, starts, weights,
                     weight_start, taps, columns, bias, bias_start):
            return types.void(output, output_start, output_stride, image, image_start, starts, weights, weight_start,
                              taps, columns, bias, bias_start), codegen

        tap_sums.__name__ = f"row_tap_sums_{channels}x{LANES * vectors}"
        tap_sums.__doc__ = (f"output[output_start + c*output_stride + k] = sum over t < taps of weights[weight_start "
                            f"+ c*taps + t] * image[image_start + starts[t] + k] + bias[bias_start + c], for c < "
                            f"{channels}, k < columns; columns from {LANES} to {LANES * vectors}.")
    else:
        def tap_sums(typingctx, output, output_start, output_stride, image, image_start, starts, weights,
                     weight_start, taps):
            return types.void(output, output_start, output_stride, image, image_start, starts, weights, weight_start,
                              taps), codegen

        tap_sums.__name__ = f"tap_sums_{channels}x{LANES * vectors}"
        tap_sums.__doc__ = (f"output[output_start + c*output_stride + k] = sum over t < taps of weights[weight_start "
                            f"+ c*taps + t] * image[image_start + starts[t] + k], for c < {channels}, k < "
                            f"{LANES * vectors}.")
    return intrinsic(tap_sums)


tap_sums_2x32 = _make_tap_sums(2)
tap_sums_1x32 = _make_tap_sums(1)
row_tap_sums_2x32 = _make_tap_sums(2, row=True)
row_tap_sums_1x32 = _make_tap_sums(1, row=True)
row_tap_sums_3x32 = _make_tap_sums(3, row=True)


def _make_tap_dots(tap_count, channels, row=False):
    """An intrinsic adding the dot products of `tap_count` taps' runs with `channels` output-gradient rows
    into a weight gradient's sums (see tap_dots_4x3). With `row`, the runs are an image's output rows, read
    where they lie (see row_tap_dots_4x3)."""

    def codegen(context, builder, signature, args):
        intp = context.get_value_type(types.intp)

        def index(position):
            return context.cast(builder, args[position], signature.args[position], types.intp)

        def constant(value):
            return ir.Constant(intp, value)

        first_tap, first_channel, channels_total = index(1), index(2), index(3)
        grad_stride = index(7)
        element = context.get_data_type(signature.args[0].dtype)
        vector = ir.VectorType(element, LANES)
        align = context.get_abi_sizeof(element)
        sums_data = _data(context, builder, signature.args[0], args[0])
        image_data = _data(context, builder, signature.args[4], args[4])
        starts_data = _data(context, builder, signature.args[5], args[5])
        grads_data = _data(context, builder, signature.args[6], args[6])
        start_type = context.get_data_type(signature.args[5].dtype)
        fma_name = f"llvm.fma.v{LANES}f{'32' if element == ir.FloatType() else '64'}"
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector] * 3), fma_name)
        zero = ir.Constant(vector, [ir.Constant(element, 0.0)] * LANES)

        tap_starts = []
        for i in range(tap_count):
            start = builder.load(builder.gep(starts_data, [builder.add(first_tap, constant(i))]))
            if start_type != intp:
                start = builder.sext(start, intp) if start_type.width < intp.width else builder.trunc(start, intp)
            tap_starts.append(start)
        grad_rows = [builder.mul(builder.add(first_channel, constant(c)), grad_stride) for c in range(channels)]
        if row:  # vector v of a row at column min(v*LANES, columns - LANES), its lanes before `fresh` masked
            rows, columns, image_row_stride, grad_row_stride, fresh_from = (index(k) for k in range(8, 13))
            lane_type = ir.VectorType(intp, LANES)
            lane_numbers = ir.Constant(lane_type, list(range(LANES)))
            splat_mask = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)

            def splat(value):
                first = builder.insert_element(ir.Constant(lane_type, ir.Undefined), value,
                                               ir.Constant(ir.IntType(32), 0))
                return builder.shuffle_vector(first, first, splat_mask)

            def smaller(x, y):
                return builder.select(builder.icmp_signed("<", x, y), x, y)

            def larger(x, y):
                return builder.select(builder.icmp_signed(">", x, y), x, y)
            last_column = builder.sub(columns, constant(LANES))
            offsets, fresh = [], []
            for v in range(VECTORS):
                offsets.append(smaller(constant(LANES * v), last_column))
                first_fresh = larger(smaller(constant(LANES * v), columns), fresh_from)
                fresh.append(builder.icmp_signed(">=", builder.add(splat(offsets[v]), lane_numbers),
                                                 splat(first_fresh)))
            go_on = builder.and_(builder.icmp_signed(">", rows, constant(0)),
                                 builder.icmp_signed(">=", columns, constant(LANES)))
        else:
            count = index(8)
            go_on = builder.icmp_signed(">", count, constant(0))

        entry = builder.basic_block
        loop = builder.append_basic_block("positions")
        done = builder.append_basic_block("positions_done")
        builder.cbranch(go_on, loop, done)

        builder.position_at_end(loop)
        if row:  # counters: rows left, the row's offsets in the image and in the gradient
            rows_left, image_row, grad_row = (builder.phi(intp) for _ in range(3))
            for phi, first in ((rows_left, rows), (image_row, constant(0)), (grad_row, constant(0))):
                phi.add_incoming(first, entry)
        else:
            position = builder.phi(intp)
            position.add_incoming(constant(0), entry)
        partial = []  # every phi first: LLVM wants them at the top of the block
        for _ in range(tap_count * channels):
            phi = builder.phi(vector)
            phi.add_incoming(zero, entry)
            partial.append(phi)

        def load(data, where):
            return builder.load(builder.bitcast(builder.gep(data, [where]), vector.as_pointer()), align=align)

        def add_products(sums, image_position, grad_position, fresh=None):
            pixels = [load(image_data, builder.add(start, image_position)) for start in tap_starts]
            gradients = [load(grads_data, builder.add(grad_row_start, grad_position)) for grad_row_start in grad_rows]
            if fresh is not None:  # lanes an earlier vector already holds count once
                gradients = [builder.select(fresh, gradient, zero) for gradient in gradients]
            return [builder.call(fma, [pixels[i], gradients[c], sums[i * channels + c]])
                    for i in range(tap_count) for c in range(channels)]

        if row:
            updated = partial
            for v in range(VECTORS):
                updated = add_products(updated, builder.add(image_row, offsets[v]), builder.add(grad_row, offsets[v]),
                                       fresh[v])
            next_rows_left = builder.sub(rows_left, constant(1))
            rows_left.add_incoming(next_rows_left, loop)
            image_row.add_incoming(builder.add(image_row, image_row_stride), loop)
            grad_row.add_incoming(builder.add(grad_row, grad_row_stride), loop)
            more = builder.icmp_signed(">", next_rows_left, constant(0))
        else:
            updated = add_products(partial, position, position)
            next_position = builder.add(position, constant(LANES))
            position.add_incoming(next_position, loop)
            more = builder.icmp_signed("<", next_position, count)
        for phi, value in zip(partial, updated):
            phi.add_incoming(value, loop)
        builder.cbranch(more, loop, done)

        builder.position_at_end(done)
        totals = []
        for value in updated:
            result = builder.phi(vector)
            result.add_incoming(zero, entry)
            result.add_incoming(value, loop)
            totals.append(result)
        for i in range(tap_count):
            for c in range(channels):
                total = totals[i * channels + c]
                lanes = [builder.extract_element(total, ir.Constant(ir.IntType(32), k)) for k in range(LANES)]
                while len(lanes) > 1:  # pairwise, in a fixed order
                    lanes = [builder.fadd(lanes[k], lanes[k + 1]) for k in range(0, len(lanes), 2)]
                where = builder.add(builder.mul(builder.add(first_tap, constant(i)), channels_total),
                                    builder.add(first_channel, constant(c)))
                pointer = builder.gep(sums_data, [where])
                builder.store(builder.fadd(builder.load(pointer), lanes[0]), pointer)
        return context.get_dummy_value()

    if row:
        def tap_dots(typingctx, sums, first_tap, first_channel, channels_total, image, starts, grads, grad_stride,
                     rows, columns, image_row_stride, grad_row_stride, fresh_from):
            return types.void(sums, first_tap, first_channel, channels_total, image, starts, grads, grad_stride, rows,
                              columns, image_row_stride, grad_row_stride, fresh_from), codegen

        tap_dots.__name__ = f"row_tap_dots_{tap_count}x{channels}"
        tap_dots.__doc__ = (f"sums[(first_tap + i)*channels_total + first_channel + c] += sum over r < rows, "
                            f"fresh_from <= q < columns of image[starts[first_tap + i] + r*image_row_stride + q] * "
                            f"grads[(first_channel + c)*grad_stride + r*grad_row_stride + q], for i < {tap_count}, c < "
                            f"{channels}; {LANES} <= columns <= {LANES * VECTORS}.")
    else:
        def tap_dots(typingctx, sums, first_tap, first_channel, channels_total, image, starts, grads, grad_stride,
                     count):
            return types.void(sums, first_tap, first_channel, channels_total, image, starts, grads, grad_stride,
                              count), codegen

        tap_dots.__name__ = f"tap_dots_{tap_count}x{channels}"
        tap_dots.__doc__ = (f"sums[(first_tap + i)*channels_total + first_channel + c] += sum over q < count of "
                            f"image[starts[first_tap + i] + q] * grads[(first_channel + c)*grad_stride + q], for i < "
                            f"{tap_count}, c < {channels}; count a multiple of {LANES}.")
    return intrinsic(tap_dots)


tap_dots_4x3 = _make_tap_dots(4, 3)
tap_dots_4x1 = _make_tap_dots(4, 1)
tap_dots_1x3 = _make_tap_dots(1, 3)
tap_dots_1x1 = _make_tap_dots(1, 1)
row_tap_dots_4x3 = _make_tap_dots(4, 3, row=True)
row_tap_dots_4x1 = _make_tap_dots(4, 1, row=True)
row_tap_dots_1x3 = _make_tap_dots(1, 3, row=True)
row_tap_dots_1x1 = _make_tap_dots(1, 1, row=True)


def _make_max_pool_block(lanes, record):
    """An intrinsic for `lanes` neighbouring outputs of a 2x2, stride-2 max pooling (see max_pool_2x2_8)."""

    def max_pool_block(typingctx, top, bottom, best, where, first, base, width):
        signature = types.int64(top, bottom, best, where, first, base, width)

        def codegen(context, builder, signature, args):
            intp = context.get_value_type(types.intp)
            i64 = ir.IntType(64)

            def index(position):
                return context.cast(builder, args[position], signature.args[position], types.intp)

            first, base, width = index(4), index(5), index(6)
            element = context.get_data_type(signature.args[0].dtype)
            align = context.get_abi_sizeof(element)
            wide = ir.VectorType(element, 2 * lanes)
            vector = ir.VectorType(element, lanes)
            positions = ir.VectorType(i64, lanes)
            even = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [2 * k for k in range(lanes)])
            odd = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [2 * k + 1 for k in range(lanes)])

            def load_pairs(position):
                data = _data(context, builder, signature.args[position], args[position])
                pointer = builder.gep(data, [builder.mul(first, ir.Constant(intp, 2))])
                values = builder.load(builder.bitcast(pointer, wide.as_pointer()), align=align)
                return (builder.shuffle_vector(values, values, even), builder.shuffle_vector(values, values, odd))

            a, b = load_pairs(0)
            c, d = load_pairs(1)

            def larger(x, y):  # max(x, y) as Numba's max() gives it for ordered values: y when y > x
                return builder.select(builder.fcmp_ordered(">", y, x), y, x)

            top_max = larger(larger(a, b), larger(c, d))
            best_pointer = builder.gep(_data(context, builder, signature.args[2], args[2]), [first])
            builder.store(top_max, builder.bitcast(best_pointer, vector.as_pointer()), align=align)
            if record:
                def splat(value):
                    single = builder.insert_element(ir.Constant(positions, ir.Undefined), value,
                                                    ir.Constant(ir.IntType(32), 0))
                    return builder.shuffle_vector(single, single, ir.Constant(ir.VectorType(ir.IntType(32), lanes),
                                                                              [0] * lanes))

                row_start = builder.add(base, builder.mul(first, ir.Constant(intp, 2)))
                columns = builder.add(splat(row_start), ir.Constant(positions, [2 * k for k in range(lanes)]))
                below = splat(width)
                below_right = builder.add(below, ir.Constant(positions, [1] * lanes))
                # the first tap (row-major) equal to the maximum, as in the scalar loop
                offset = builder.select(builder.fcmp_ordered("==", c, top_max), below, below_right)
                offset = builder.select(builder.fcmp_ordered("==", b, top_max), ir.Constant(positions, [1] * lanes),
                                        offset)
                offset = builder.select(builder.fcmp_ordered("==", a, top_max), ir.Constant(positions, [0] * lanes),
                                        offset)
                where_pointer = builder.gep(_data(context, builder, signature.args[3], args[3]), [first])
                builder.store(builder.add(columns, offset), builder.bitcast(where_pointer, positions.as_pointer()),
                              align=8)
            # 1 when any of the window values is NaN (the caller redoes such rows by the definition)
            unordered = builder.or_(builder.fcmp_unordered("uno", a, b), builder.fcmp_unordered("uno", c, d))
            any_nan = builder.extract_element(unordered, ir.Constant(ir.IntType(32), 0))
            for k in range(1, lanes):
                any_nan = builder.or_(any_nan, builder.extract_element(unordered, ir.Constant(ir.IntType(32), k)))
            return builder.zext(any_nan, i64)

        return signature, codegen

    max_pool_block.__name__ = f"max_pool_2x2_{lanes}{'' if record else '_values'}"
    max_pool_block.__doc__ = (
        f"For the {lanes} outputs o = first + k of a row of 2x2, stride-2 max pooling: best[o] = the maximum of "
        f"top[2o], top[2o + 1], bottom[2o], bottom[2o + 1]" + (
            ", where[o] = base + 2o + (0, 1, width, width + 1) for the first of them equal to it" if record else
            " (where is not written)") + "; returns 1 when any of those values is NaN (then best and where are "
        "not the pooling's: the caller redoes the row), else 0. top and bottom hold 2 * (first + lanes) values.")
    return intrinsic(max_pool_block)


max_pool_2x2_8 = _make_max_pool_block(8, True)
max_pool_2x2_4 = _make_max_pool_block(4, True)
max_pool_2x2_8_values = _make_max_pool_block(8, False)
max_pool_2x2_4_values = _make_max_pool_block(4, False)

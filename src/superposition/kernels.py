"""CPU kernels (numba) for the training loop: a sparse sampler and per-sample fused gradients.

Nothing here is public API; :mod:`superposition.fastpaths` wraps it. Arrays are numpy views of the
trainer's torch tensors (shared memory), laid out ``[inst, ...]`` like everywhere else.

Random numbers come from a counter-based stream (splitmix64) whose start is a hash of (key, step),
each instance having its own key, drawn from a ``torch.Generator`` seeded by its config's seed and
its index within that config. Each instance is sampled and processed sequentially by one thread, so
the fused path's results are bit-identical whatever the thread count, the chunking or the stacking
(the sparse path's samples are too; its dense products are torch's batched matmuls).

Sampling draws only the features that are present. Features are grouped into *units* that share one
coin: an independent feature, a correlated set or an anticorrelated set. Per instance, candidate
(sample, unit) positions are drawn at the highest unit probability ``qmax`` by geometric gaps, and
a candidate is kept with probability ``q[unit] / qmax`` (thinning): every (sample, unit) is then
present independently with probability ``q[unit]``, exactly the documented distribution, at a cost
proportional to the number of present features. When ``qmax`` is large a plain coin per position is
cheaper (``dense`` mode) and is used instead.
"""

from typing import no_type_check

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from superposition.jit import njit, prange  # first: it sets up numba's cache

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53
_TO_UNIT32 = 1.0 / 4294967296.0  # 2**-32

INDEPENDENT, CORRELATED, ANTICORRELATED = 0, 1, 2


@njit(inline="always", cache=True)
@no_type_check  # numba compiles these: keep jaxtyping's test-time wrapper away
def _mix(z: np.uint64) -> np.uint64:
    # splitmix64's finaliser: a bijection of 64-bit integers with full avalanche
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(inline="always", cache=True)
@no_type_check  # numba compiles these: keep jaxtyping's test-time wrapper away
def _uniform(state: np.uint64) -> tuple[np.uint64, float]:
    """Next state and a uniform float64 in [0, 1) from its top 53 bits."""
    state = state + _GAMMA
    return state, float(_mix(state) >> np.uint64(11)) * _TO_UNIT


@njit(inline="always", cache=True)
@no_type_check  # numba compiles these: keep jaxtyping's test-time wrapper away
def stream(key: np.uint64, step: np.int64) -> np.uint64:
    """The start state of an instance's stream (its ``key``) at counter ``step``."""
    # an instance's key is already unique to it (derived from its config's seed and its index in
    # that config), so its stream does not depend on which instances it is trained beside
    return _mix(key ^ _mix(np.uint64(step) * _GAMMA + np.uint64(1)))


@njit(inline="always", cache=True)
@no_type_check  # numba compiles these: keep jaxtyping's test-time wrapper away
def _gap(r: float, inv_log: float, limit: np.int64) -> np.int64:
    # failures before the next success of a Bernoulli(qmax) sequence: floor(log(1-r) / log(1-qmax))
    g = np.log1p(-r) * inv_log
    return np.int64(g) if g < limit else limit


@njit(inline="always", cache=True)
@no_type_check  # numba compiles these: keep jaxtyping's test-time wrapper away
def _emit(
    state: np.uint64,
    kind: np.int64,
    start: np.int64,
    size: np.int64,
    w: float,
    signed: bool,
    idx: np.ndarray,
    val: np.ndarray,
    nnz: np.int64,
) -> tuple[np.uint64, np.int64]:
    """Write the present members of one active unit; ``w`` is a fresh uniform in [0, 1)."""
    if kind == ANTICORRELATED:
        # w * size names the member (integer part) and gives its magnitude (fractional part)
        t = w * size
        j = min(np.int64(t), size - 1)
        m = 1.0 - (t - j)
        idx[nnz] = start + j
        val[nnz] = 2.0 * m - 1.0 if signed else m
        return state, nnz + 1
    m = 1.0 - w  # in (0, 1]: a present feature is never exactly 0
    idx[nnz] = start
    val[nnz] = 2.0 * m - 1.0 if signed else m
    nnz += 1
    for j in range(1, size):  # the other members of a correlated set: independent magnitudes
        state, r = _uniform(state)
        m = 1.0 - r
        idx[nnz] = start + j
        val[nnz] = 2.0 * m - 1.0 if signed else m
        nnz += 1
    return state, nnz


@njit(cache=True)
@no_type_check  # numba compiles these: keep jaxtyping's test-time wrapper away
def sample_instance(
    state: np.uint64,
    batch: np.int64,
    kind: np.ndarray,
    start: np.ndarray,
    size: np.ndarray,
    q: np.ndarray,
    qmax: float,
    inv_log: float,
    dense: bool,
    signed: bool,
    idx: np.ndarray,
    val: np.ndarray,
    rowptr: np.ndarray,
) -> np.uint64:
    """Fill one instance's batch in CSR form: sample s holds ``idx/val[rowptr[s]:rowptr[s+1]]``,
    features in increasing order."""
    n_units = kind.shape[0]
    nnz = np.int64(0)
    rowptr[0] = 0
    if dense:
        for s in range(batch):
            for u in range(n_units):
                state, r = _uniform(state)
                if r < q[u]:
                    # one uniform gives the coin and, rescaled, an independent uniform
                    state, nnz = _emit(
                        state, kind[u], start[u], size[u], r / q[u], signed, idx, val, nnz
                    )
            rowptr[s + 1] = nnz
        return state
    total = np.int64(batch) * n_units
    done = np.int64(0)  # samples whose row is complete
    state, r = _uniform(state)
    pos = _gap(r, inv_log, total)
    while pos < total:
        s = pos // n_units
        u = pos - s * n_units
        while done < s:
            rowptr[done + 1] = nnz
            done += 1
        state, r = _uniform(state)
        keep = q[u] / qmax
        if r < keep:
            state, nnz = _emit(state, kind[u], start[u], size[u], r / keep, signed, idx, val, nnz)
        state, r = _uniform(state)
        pos += 1 + _gap(r, inv_log, total)
    while done < batch:
        rowptr[done + 1] = nnz
        done += 1
    return state


@njit(parallel=True, cache=True)
@no_type_check  # numba compiles these: keep jaxtyping's test-time wrapper away
def sample_csr(
    keys: np.ndarray,
    step: np.int64,
    kind: np.ndarray,
    start: np.ndarray,
    size: np.ndarray,
    q: np.ndarray,
    qmax: np.ndarray,
    inv_log: np.ndarray,
    dense: np.ndarray,
    signed: bool,
    idx: np.ndarray,
    val: np.ndarray,
    rowptr: np.ndarray,
) -> None:
    """Sample every instance's batch (``rowptr.shape[1] - 1`` samples) into ``idx/val/rowptr``."""
    n_inst = q.shape[0]
    batch = rowptr.shape[1] - 1
    for k in prange(n_inst):
        state = stream(keys[k], step)
        sample_instance(
            state, batch, kind, start, size, q[k], qmax[k], inv_log[k], dense[k], signed,
            idx[k], val[k], rowptr[k],
        )


@njit(cache=True)
@no_type_check  # numba compiles these: keep jaxtyping's test-time wrapper away
def csr_to_dense(idx: np.ndarray, val: np.ndarray, rowptr: np.ndarray, x: np.ndarray) -> None:
    """Scatter CSR samples into a zeroed ``x`` [inst, batch, feat] (tests and debugging)."""
    for k in range(x.shape[0]):
        for s in range(x.shape[1]):
            for e in range(rowptr[k, s], rowptr[k, s + 1]):
                x[k, s, idx[k, e]] = val[k, e]


# --------------------------------------------------------------------------------------------------
# the fused path: sample and differentiate one instance at a time, in cache (tiny models)

# No "reassoc": with it LLVM vectorises the sums over the batch in an order that differed between a
# freshly compiled kernel and the same kernel loaded from numba's cache, so an instance could end in
# different last bits from one process to the next (a resumed sweep, a Ray task). The sums over the
# batch are written as explicit vector code instead (:func:`_vdot`), whose order is fixed in the IR.
# Fused multiply-adds and signed zeros stay free in the element-wise loops; no assumption about NaN
# or infinities.
_VECTOR_MATH = {"contract", "nsz"}

_LANES = 16  # floats per vector in :func:`_vdot` (one AVX-512 register, two AVX2 ones)
_CHAINS = 4  # independent vector sums, so consecutive fused multiply-adds do not wait on each other


def _lane_tree(builder: ir.IRBuilder, v: ir.Value, width: int) -> ir.Value:
    """Sum of a vector's lanes in a fixed order: lane l plus lane l + width/2, halving."""
    i32 = ir.IntType(32)
    while width > 1:
        half = width // 2
        lo = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(i32, half), list(range(half))))
        hi = builder.shuffle_vector(
            v, v, ir.Constant(ir.VectorType(i32, half), list(range(half, width)))
        )
        v = builder.fadd(lo, hi)
        width = half
    return builder.extract_element(v, ir.Constant(i32, 0))


@intrinsic
@no_type_check  # numba's typing hook, not Python: keep jaxtyping's test-time wrapper away
def _vdot(typingctx, a, b):  # type: ignore[no-untyped-def]
    """sum_s a[s] * b[s] for contiguous float32 vectors, in an order spelled out in the IR, so the
    bits do not depend on how the compiler vectorises (no fastmath reassociation needed):

    element s goes, by fused multiply-add, into lane s % 16 of running vector sum (s // 16) % 4 of
    the whole 64-element blocks; the leftover whole 16-element blocks go into sum 0; the four sums
    are added as (0 + 1) + (2 + 3), its lanes by :func:`_lane_tree`; the last n % 16 elements
    are then added one at a time, again by fused multiply-add (``llvm.fma``: one rounding, on any
    CPU).
    """
    for t in (a, b):
        if not (
            isinstance(t, types.Array)
            and t.ndim == 1
            and t.dtype == types.float32
            and t.layout == "C"
        ):
            return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        arrays = [
            context.make_array(ty)(context, builder, v)
            for ty, v in zip(signature.args, args, strict=True)
        ]
        pa, pb = (arr.data for arr in arrays)
        n = builder.extract_value(arrays[0].shape, 0)
        i64, f32 = ir.IntType(64), ir.FloatType()
        vt = ir.VectorType(f32, _LANES)
        fma_v = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vt, [vt, vt, vt]), f"llvm.fma.v{_LANES}f32"
        )
        fma_s = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(f32, [f32, f32, f32]), "llvm.fma.f32"
        )
        sums = [cgutils.alloca_once_value(builder, ir.Constant(vt, [0.0] * _LANES))
                for _ in range(_CHAINS)]  # fmt: skip

        def block(offset: ir.Value, acc: ir.Value) -> None:
            va = builder.load(builder.bitcast(builder.gep(pa, [offset]), vt.as_pointer()), align=4)
            vb = builder.load(builder.bitcast(builder.gep(pb, [offset]), vt.as_pointer()), align=4)
            builder.store(builder.call(fma_v, [va, vb, builder.load(acc)]), acc)

        big = _LANES * _CHAINS
        n_big = builder.udiv(n, ir.Constant(i64, big))
        with cgutils.for_range(builder, n_big) as loop:
            base = builder.mul(loop.index, ir.Constant(i64, big))
            for c in range(_CHAINS):
                block(builder.add(base, ir.Constant(i64, c * _LANES)), sums[c])
        done = builder.mul(n_big, ir.Constant(i64, big))
        n_small = builder.udiv(builder.sub(n, done), ir.Constant(i64, _LANES))
        with cgutils.for_range(builder, n_small) as loop:
            block(builder.add(done, builder.mul(loop.index, ir.Constant(i64, _LANES))), sums[0])
        v = [builder.load(acc) for acc in sums]
        while len(v) > 1:
            v = [builder.fadd(v[i], v[i + 1]) for i in range(0, len(v), 2)]
        total = cgutils.alloca_once_value(builder, _lane_tree(builder, v[0], _LANES))
        tail = builder.add(done, builder.mul(n_small, ir.Constant(i64, _LANES)))
        with cgutils.for_range(builder, builder.sub(n, tail)) as loop:
            s = builder.add(tail, loop.index)
            xa, xb = builder.load(builder.gep(pa, [s])), builder.load(builder.gep(pb, [s]))
            builder.store(builder.call(fma_s, [xa, xb, builder.load(total)]), total)
        return builder.load(total)

    return types.float32(a, b), codegen


@njit(fastmath=_VECTOR_MATH, cache=True)
@no_type_check  # numba compiles these: keep jaxtyping's test-time wrapper away
def _fill_independent(state: np.uint64, q: np.ndarray, signed: bool, x: np.ndarray) -> None:
    """x[i, s] for independent features, a coin and magnitude from one 32-bit uniform per position.

    Counter-based and branch-free, so it vectorises: hash c of row i gives samples c (top half)
    and c + batch // 2 (bottom half). 32-bit uniforms quantise the magnitude to 2**-32 / q.
    """
    n, batch = x.shape
    half = (batch + 1) // 2
    pairs = batch // 2  # hashes that fill both halves; an odd batch has one more, top half only
    for i in range(n):
        qi = q[i]
        inv = 1.0 / qi
        row = x[i]
        top = row[:half]
        bottom = row[half:]
        # the counter advances by one _GAMMA per hash (an add, not a multiply per lane)
        counter = state + np.uint64(i * half) * _GAMMA
        for c in range(pairs):
            counter += _GAMMA
            z = _mix(counter)
            r = float(z >> np.uint64(32)) * _TO_UNIT32
            m = 1.0 - r * inv
            v = 2.0 * m - 1.0 if signed else m
            top[c] = v if r < qi else 0.0
            r = float(z & np.uint64(0xFFFFFFFF)) * _TO_UNIT32
            m = 1.0 - r * inv
            v = 2.0 * m - 1.0 if signed else m
            bottom[c] = v if r < qi else 0.0
        if pairs < half:
            z = _mix(counter + _GAMMA)
            r = float(z >> np.uint64(32)) * _TO_UNIT32
            m = 1.0 - r * inv
            v = 2.0 * m - 1.0 if signed else m
            top[pairs] = v if r < qi else 0.0


@njit(cache=True)
@no_type_check  # numba compiles these: keep jaxtyping's test-time wrapper away
def _scatter_independent(
    state: np.uint64, q: np.ndarray, qmax: float, inv_log: float, signed: bool, x: np.ndarray
) -> None:
    """Geometric gaps and thinning as in :func:`sample_instance`, written straight into x."""
    n, batch = x.shape
    total = np.int64(batch) * n
    state, r = _uniform(state)
    pos = _gap(r, inv_log, total)
    while pos < total:
        s = pos // n
        i = pos - s * n
        state, r = _uniform(state)
        keep = q[i] / qmax
        if r < keep:
            m = 1.0 - r / keep
            x[i, s] = 2.0 * m - 1.0 if signed else m
        state, r = _uniform(state)
        pos += 1 + _gap(r, inv_log, total)


@njit(cache=True)
@no_type_check  # numba compiles these: keep jaxtyping's test-time wrapper away
def _sample_dense_instance(
    state: np.uint64,
    kind: np.ndarray,
    start: np.ndarray,
    size: np.ndarray,
    q: np.ndarray,
    qmax: float,
    inv_log: float,
    dense: bool,
    signed: bool,
    x: np.ndarray,
    idx: np.ndarray,
    val: np.ndarray,
    rowptr: np.ndarray,
) -> None:
    """The fused path's batch, written into x [feat, batch] (every element: the vector coins
    write them all, the other samplers zero x first; idx/val/rowptr: scratch)."""
    all_independent = True
    for u in range(kind.shape[0]):
        all_independent &= kind[u] == INDEPENDENT
    if all_independent and dense:
        _fill_independent(state, q, signed, x)
        return
    x[:] = 0.0
    if all_independent:
        _scatter_independent(state, q, qmax, inv_log, signed, x)
        return
    sample_instance(
        state, x.shape[1], kind, start, size, q, qmax, inv_log, dense, signed, idx, val, rowptr
    )
    for s in range(x.shape[1]):
        for e in range(rowptr[s], rowptr[s + 1]):
            x[idx[e], s] = val[e]


@njit(parallel=True, cache=True)
@no_type_check  # numba compiles these: keep jaxtyping's test-time wrapper away
def sample_dense(
    keys: np.ndarray,
    step: np.int64,
    kind: np.ndarray,
    start: np.ndarray,
    size: np.ndarray,
    q: np.ndarray,
    qmax: np.ndarray,
    inv_log: np.ndarray,
    dense: np.ndarray,
    signed: bool,
    x: np.ndarray,
) -> None:
    """The batch :func:`fused_step` draws, written into x [inst, feat, batch]."""
    n_inst, n, batch = x.shape
    for k in prange(n_inst):
        idx = np.empty(batch * n, np.int32)
        val = np.empty(batch * n, np.float32)
        rowptr = np.empty(batch + 1, np.int64)
        _sample_dense_instance(
            stream(keys[k], step), kind, start, size, q[k], qmax[k], inv_log[k],
            dense[k], signed, x[k], idx, val, rowptr,
        )


@njit(inline="always", fastmath=_VECTOR_MATH, cache=True)
@no_type_check  # numba compiles these: keep jaxtyping's test-time wrapper away
def _add_products(
    out: np.ndarray, rows: np.ndarray, w: np.ndarray, fresh: bool, start: np.float32
) -> None:
    """out[s] += w[0] rows[0, s], then += w[1] rows[1, s], ... : the terms added one by one in row
    order (the same bits as one pass per row) but four rows per pass, so ``out`` is loaded and
    stored once per four products instead of once per product. ``fresh``: out starts at ``start``
    instead (the same bits as filling it with ``start`` first, without that pass)."""
    n = rows.shape[0]
    full = n - n % 4
    if fresh and full == 0:
        out[:] = start
        fresh = False
    for r in range(0, full, 4):
        w0, w1, w2, w3 = w[r], w[r + 1], w[r + 2], w[r + 3]
        x0, x1, x2, x3 = rows[r], rows[r + 1], rows[r + 2], rows[r + 3]
        if fresh and r == 0:
            for s in range(out.shape[0]):
                t = start
                t += w0 * x0[s]
                t += w1 * x1[s]
                t += w2 * x2[s]
                t += w3 * x3[s]
                out[s] = t
            continue
        for s in range(out.shape[0]):
            t = out[s]
            t += w0 * x0[s]
            t += w1 * x1[s]
            t += w2 * x2[s]
            t += w3 * x3[s]
            out[s] = t
    for r in range(full, n):
        wr = w[r]
        xr = rows[r]
        for s in range(out.shape[0]):
            out[s] += wr * xr[s]


@njit(fastmath=_VECTOR_MATH, cache=True)
@no_type_check  # numba compiles these: keep jaxtyping's test-time wrapper away
def _instance_grads(
    x: np.ndarray,
    W: np.ndarray,
    dec: np.ndarray,
    b: np.ndarray,
    coef: np.ndarray,
    imp: np.ndarray,
    hidden_relu: bool,
    output_relu: bool,
    abs_target: bool,
    with_loss: bool,
    aW: np.ndarray,
    adec: np.ndarray,
    ab: np.ndarray,
    h: np.ndarray,
    gh: np.ndarray,
    g: np.ndarray,
    d: np.ndarray,
    ones: np.ndarray,
) -> float:
    """One instance's gradients from its batch ``x`` [feat, batch] (batch innermost, so every loop
    below is a vector loop); returns the summed importance-weighted squared error when
    ``with_loss`` (0 otherwise: the gradients do not need it, so it is skipped). ``h``, ``gh``
    [hidden, batch], ``g`` [4, batch], ``d`` [batch]: scratch; ``ones`` [batch]: ones.

    Same maths as :meth:`ToyModel.loss_and_grads`: o = W_dec h + b, g = coef (act(o) - target)
    masked by the output ReLU, and so on. Output features are handled four at a time (``g``
    holds their gradients), so dL/dh gathers four of them per pass.
    """
    n, batch = x.shape
    m = W.shape[1]
    WT = W.T  # [hidden, feat]: h[a] = sum_i W[i, a] x[i]
    decT = dec.T
    for a in range(m):
        ha = h[a]
        # zeros in memory, not a constant start: from a constant 0 LLVM drops the first addition
        # and may then fuse a different product of the chain (other bits)
        ha[:] = 0.0
        _add_products(ha, x, WT[a], False, np.float32(0.0))
        if hidden_relu:
            for s in range(batch):
                ha[s] = max(ha[s], np.float32(0.0))
        gh[a, :] = 0.0
    err = 0.0
    for j0 in range(0, n, 4):
        nj = min(4, n - j0)
        for jj in range(nj):
            j = j0 + jj
            gj = g[jj]
            _add_products(gj, h, dec[j], True, b[j])
            xj = x[j]
            cj = coef[j]
            if with_loss:
                for s in range(batch):
                    o = gj[s]
                    t = abs(xj[s]) if abs_target else xj[s]
                    live = o > 0.0 or not output_relu
                    ds = (o if live else np.float32(0.0)) - t
                    d[s] = ds
                    gj[s] = cj * ds if live else np.float32(0.0)
                err += imp[j] * _vdot(d, d)
            else:  # the same gradient, without keeping the residuals for the loss
                for s in range(batch):
                    o = gj[s]
                    t = abs(xj[s]) if abs_target else xj[s]
                    live = o > 0.0 or not output_relu
                    ds = (o if live else np.float32(0.0)) - t
                    gj[s] = cj * ds if live else np.float32(0.0)
            ab[j] = _vdot(gj, ones)
            for a in range(m):
                adec[j, a] = _vdot(gj, h[a])
        for a in range(m):
            _add_products(gh[a], g[:nj], decT[a, j0 : j0 + nj], False, np.float32(0.0))
    if hidden_relu:
        for a in range(m):
            ha = h[a]
            gha = gh[a]
            for s in range(batch):
                gha[s] = gha[s] if ha[s] > 0.0 else np.float32(0.0)
    for i in range(n):
        for a in range(m):
            aW[i, a] = _vdot(x[i], gh[a])
    return err


@njit(parallel=True, cache=True)
@no_type_check  # numba compiles these: keep jaxtyping's test-time wrapper away
def fused_step(
    keys: np.ndarray,
    step: np.int64,
    batch: np.int64,
    kind: np.ndarray,
    start: np.ndarray,
    size: np.ndarray,
    q: np.ndarray,
    qmax: np.ndarray,
    inv_log: np.ndarray,
    dense: np.ndarray,
    signed: bool,
    W: np.ndarray,
    dec: np.ndarray,
    b: np.ndarray,
    coef: np.ndarray,
    imp: np.ndarray,
    hidden_relu: bool,
    output_relu: bool,
    abs_target: bool,
    tied: bool,
    with_loss: bool,
    gW: np.ndarray,
    gdec: np.ndarray,
    gb: np.ndarray,
    err: np.ndarray,
) -> None:
    """One training step's gradients for every instance: sample, forward, backward, fused.

    Writes ``gW``, ``gb`` and (untied) ``gdec``; with ``with_loss``, ``err[k]`` is instance k's
    summed importance-weighted squared error (the loss times batch * feat). The batch is drawn
    exactly as :func:`sample_csr` draws it.
    """
    n_inst, n, m = W.shape
    # a few blocks of instances per thread, each with its own scratch, allocated once per step
    n_blocks = min(n_inst, 64)
    for blk in prange(n_blocks):
        x = np.empty((n, batch), np.float32)
        idx = np.empty(batch * n, np.int32)
        val = np.empty(batch * n, np.float32)
        rowptr = np.empty(batch + 1, np.int64)
        aW = np.empty((n, m), np.float32)
        adec = np.empty((n, m), np.float32)
        ab = np.empty(n, np.float32)
        h = np.empty((m, batch), np.float32)
        gh = np.empty((m, batch), np.float32)
        g = np.empty((4, batch), np.float32)
        d = np.empty(batch, np.float32)
        ones = np.ones(batch, np.float32)
        for k in range(blk * n_inst // n_blocks, (blk + 1) * n_inst // n_blocks):
            _sample_dense_instance(
                stream(keys[k], step), kind, start, size, q[k], qmax[k], inv_log[k],
                dense[k], signed, x, idx, val, rowptr,
            )
            err[k] = _instance_grads(
                x, W[k], dec[k], b[k], coef[k], imp[k], hidden_relu, output_relu, abs_target,
                with_loss, aW, adec, ab, h, gh, g, d, ones,
            )
            if tied:
                gW[k] = aW + adec
            else:
                gW[k] = aW
                gdec[k] = adec
            gb[k] = ab


# --------------------------------------------------------------------------------------------------
# the sparse path: the sparse parts of the maths, around dense batched matmuls done by torch


@njit(parallel=True, cache=True)
@no_type_check  # numba compiles these: keep jaxtyping's test-time wrapper away
def sparse_xw(
    idx: np.ndarray, val: np.ndarray, rowptr: np.ndarray, W: np.ndarray, h: np.ndarray
) -> None:
    """h[k, s] = x[k, s] @ W[k] for CSR x."""
    for k in prange(h.shape[0]):
        Wk = W[k]
        for s in range(h.shape[1]):
            hs = h[k, s]
            hs[:] = 0.0
            for e in range(rowptr[k, s], rowptr[k, s + 1]):
                v, row = val[k, e], Wk[idx[k, e]]
                for a in range(hs.shape[0]):
                    hs[a] += v * row[a]


@njit(parallel=True, cache=True)
@no_type_check  # numba compiles these: keep jaxtyping's test-time wrapper away
def compact_rows(rowptr: np.ndarray, out: np.ndarray) -> int:
    """Row pointers of the non-empty samples only (in order; the remaining rows empty), into
    ``out``; returns the largest number of non-empty samples of any instance."""
    n_inst, batch = rowptr.shape[0], rowptr.shape[1] - 1
    counts = np.zeros(n_inst, np.int64)
    for k in prange(n_inst):
        r = 0
        out[k, 0] = rowptr[k, 0]
        for s in range(batch):
            if rowptr[k, s + 1] > rowptr[k, s]:
                r += 1
                out[k, r] = rowptr[k, s + 1]
        out[k, r + 1 :] = rowptr[k, batch]
        counts[k] = r
    return counts.max()


@njit(parallel=True, fastmath=_VECTOR_MATH, cache=True)
@no_type_check  # numba compiles these: keep jaxtyping's test-time wrapper away
def output_grad(
    idx: np.ndarray,
    val: np.ndarray,
    rowptr: np.ndarray,
    out: np.ndarray,
    b: np.ndarray,
    coef: np.ndarray,
    imp: np.ndarray,
    zeros: np.int64,
    output_relu: bool,
    abs_target: bool,
    gb: np.ndarray,
    err: np.ndarray,
) -> None:
    """Turn ``out`` [inst, rows, feat], holding h W_dec^T, into g = dL/do in place, one row at a
    time in cache: o = h W_dec^T + b (the bias is added here rather than by the matmul, which would
    first copy it into the whole buffer), g = coef * (act(o) - target), masked by the output ReLU.
    Also writes gb = sum over samples of g and err = summed importance-weighted squared error, both
    including ``zeros`` all-zero samples that are not among the rows (their output is act(b))."""
    n_inst, rows, n = out.shape
    for k in prange(n_inst):
        acc = np.zeros(n, np.float32)
        sq = np.zeros(n, np.float32)
        masked = 0.0
        ck, ik, bk = coef[k], imp[k], b[k]
        for s in range(rows):
            row = out[k, s]
            for j in range(n):
                o = row[j] + bk[j]
                row[j] = max(o, np.float32(0.0)) if output_relu else o
            for e in range(rowptr[k, s], rowptr[k, s + 1]):
                i = idx[k, e]
                t = abs(val[k, e]) if abs_target else val[k, e]
                if output_relu and row[i] <= 0.0:
                    masked += ik[i] * t * t  # the ReLU is off: no gradient, error t**2
                else:
                    row[i] -= t
            for j in range(n):
                d = row[j]
                sq[j] += d * d
                g = ck[j] * d
                row[j] = g
                acc[j] += g
        e = masked
        for j in range(n):
            o = max(b[k, j], 0.0) if output_relu else b[k, j]
            gb[k, j] = acc[j] + zeros * ck[j] * o
            e += ik[j] * (sq[j] + zeros * o * o)
        err[k] = e


@njit(parallel=True, fastmath=_VECTOR_MATH, cache=True)
@no_type_check  # numba compiles these: keep jaxtyping's test-time wrapper away
def dense_output_grad(
    out: np.ndarray,
    target: np.ndarray,
    coef: np.ndarray,
    imp: np.ndarray,
    output_relu: bool,
    with_loss: bool,
    err: np.ndarray,
) -> None:
    """Turn ``out`` [inst, feat, batch], holding the output before its activation, into
    g = dL/do in place: g = coef * (act(o) - target), masked by the output ReLU, in one pass over
    the batch (in torch: the ReLU, the difference, the weights and the mask, a pass each). With
    ``with_loss``, ``err[k]`` is the summed importance-weighted squared error."""
    n_inst, n, batch = out.shape
    for k in prange(n_inst):
        d = np.empty(batch, np.float32)
        e = 0.0
        for j in range(n):
            row, t, c = out[k, j], target[k, j], coef[k, j]
            for s in range(batch):
                o = row[s]
                live = o > 0.0 or not output_relu
                ds = (o if live else np.float32(0.0)) - t[s]
                d[s] = ds
                row[s] = c * ds if live else np.float32(0.0)
            if with_loss:
                e += imp[k, j] * _vdot(d, d)
        err[k] = e


@njit(parallel=True, cache=True)
@no_type_check  # numba compiles these: keep jaxtyping's test-time wrapper away
def sparse_xtg(
    idx: np.ndarray,
    val: np.ndarray,
    rowptr: np.ndarray,
    gh: np.ndarray,
    gW: np.ndarray,
    accumulate: bool,
) -> None:
    """gW[k] (+)= x[k]^T @ gh[k] for CSR x."""
    for k in prange(gW.shape[0]):
        gk = gW[k]
        if not accumulate:
            gk[:] = 0.0
        for s in range(gh.shape[1]):
            g = gh[k, s]
            for e in range(rowptr[k, s], rowptr[k, s + 1]):
                v, row = val[k, e], gk[idx[k, e]]
                for a in range(g.shape[0]):
                    row[a] += v * g[a]

"""Time depthwise3x3 against direct for M filters a channel (forward and weight gradient), forced through the
plan, in alternating rounds, thread CPU time: `NUMBA_NUM_THREADS=1 python benchmarks/depthwise_multiplier.py`.
Shape: 16x64x56x56 -> 128 (M = 2), 3x3, pad 1, groups 64, float32; the two algorithms' results checked first."""
import time, numpy as np, os
from nbconv.kernels.cpu.conv import dispatch
from nbconv.kernels.cpu.conv.plan import plan
N, C, H, W, M = 16, 64, 56, 56, 2
D = M * C
rng = np.random.default_rng(0)
x = rng.standard_normal((N, C, H, W), dtype=np.float32); w = rng.standard_normal((D, 1, 3, 3), dtype=np.float32)
b = rng.standard_normal(D, dtype=np.float32); g = rng.standard_normal((N, D, H, W), dtype=np.float32)
h = (1, 1, 1, 1, 1, 1, C)
res = {}
for alg in ("depthwise3x3", "direct"):
    pf = plan("forward", x.shape, w.shape, *h, dtype=np.float32, algorithm=alg)
    pw = plan("backward_weight", x.shape, w.shape, *h, dtype=np.float32, algorithm=alg)
    y = np.empty((N, D, H, W), np.float32); gw = np.empty_like(w)
    res[alg] = (lambda pf=pf, y=y: dispatch.run_forward(pf, x, w, b, y), lambda pw=pw, gw=gw: dispatch.run_backward_weight(pw, g, x, gw), y, gw)
    res[alg][0](); res[alg][1]()
np.testing.assert_allclose(res["depthwise3x3"][2], res["direct"][2], rtol=1e-4, atol=1e-4)
np.testing.assert_allclose(res["depthwise3x3"][3], res["direct"][3], rtol=1e-3, atol=1e-2)
t = {(a, k): [] for a in res for k in (0, 1)}
for _ in range(5):
    for a in res:
        for k in (0, 1):
            best = 1e9
            for _ in range(2):
                s = time.thread_time(); res[a][k](); best = min(best, time.thread_time() - s)
            t[a, k].append(best * 1e3)
for k, name in ((0, "forward"), (1, "weight")):
    A, B = np.array(t["depthwise3x3", k]), np.array(t["direct", k])
    print(name, "depthwise3x3", np.round(A, 2), "direct", np.round(B, 2), "direct/dw med", np.median(B / A).round(2), "min", (B / A).min().round(2), os.getloadavg())

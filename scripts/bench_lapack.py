#!/usr/bin/env python3
"""LAPACK reference timings for `cargo xtask bench-linalg` (docs/performance.md).

Times numpy (OpenBLAS LAPACK, gesdd / geqrf+orgqr / syevd) and scipy on the same shapes, dtypes
and distribution (uniform [-1, 1)) as crates/peftlab-linalg/benches/linalg.rs, and prints JSON
`{"<bench id>": {"numpy": seconds, "scipy": seconds}, "_meta": {...}}` with the median of the
repeats. Usage: bench_lapack.py [--repeats N] [--out FILE]
"""
import argparse
import json
import platform
import sys
import time

import numpy as np
import scipy
import scipy.linalg as sla

try:
    from threadpoolctl import threadpool_info
except ImportError:  # optional: only reported in the metadata
    threadpool_info = None


def median_time(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default="-")
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    out = {}
    for dtype, name in [(np.float32, "f32"), (np.float64, "f64")]:
        for m, n in [(768, 768), (1024, 4096)]:
            a = rng.uniform(-1.0, 1.0, size=(m, n)).astype(dtype)
            out[f"decomp/svd_thin/{m}x{n}/{name}"] = {
                "numpy": median_time(lambda: np.linalg.svd(a, full_matrices=False), args.repeats),
                "scipy": median_time(
                    lambda: sla.svd(a, full_matrices=False, lapack_driver="gesdd", check_finite=False),
                    args.repeats,
                ),
            }
            out[f"decomp/svd_values/{m}x{n}/{name}"] = {
                "numpy": median_time(lambda: np.linalg.svd(a, compute_uv=False), args.repeats),
                "scipy": median_time(lambda: sla.svdvals(a, check_finite=False), args.repeats),
            }
            tall = np.ascontiguousarray(a.T)
            out[f"decomp/qr/{n}x{m}/{name}"] = {
                "numpy": median_time(lambda: np.linalg.qr(tall, mode="reduced"), args.repeats),
                "scipy": median_time(
                    lambda: sla.qr(tall, mode="economic", check_finite=False), args.repeats
                ),
            }
        s = rng.uniform(-1.0, 1.0, size=(768, 768)).astype(dtype)
        s = (s + s.T) / 2
        out[f"decomp/eigh/768x768/{name}"] = {
            "numpy": median_time(lambda: np.linalg.eigh(s), args.repeats),
            "scipy": median_time(lambda: sla.eigh(s, check_finite=False), args.repeats),
        }
    out["_meta"] = {
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "python": sys.version.split()[0],
        "machine": platform.processor() or platform.machine(),
        "blas": threadpool_info() if threadpool_info else "threadpoolctl not installed",
    }
    text = json.dumps(out, indent=1)
    if args.out == "-":
        print(text)
    else:
        with open(args.out + ".tmp", "w") as f:
            f.write(text)
        import os

        os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()

"""Peer side of Grape's ANN benchmark: runs hnswlib, faiss and usearch on the data set the
Rust bench wrote, with the same queries and ground truth, so Grape's recall/QPS
curve can be compared with theirs.

Usage (venv from bench/peers/setup.sh):
    ~/.cache/grape-peer-venv/bin/python bench/peers/ann_peer.py DIR [--min-secs S] [--no-faiss-hnsw]

DIR holds meta.json ({"dim", "base", "queries", "k", "metric": l2|cosine|dot,
"threads": [...], "efs": [...]}), base.f32 (N*D f32 LE, row-major),
queries.f32 (Q*D f32) and truth.u32 (Q*k u32 row numbers, closest first).
Writes DIR/peer.json and prints a table.

QPS: T Python threads each issue single-query searches (each call itself
single-threaded; the libraries release the GIL while searching) over their
share of the queries; QPS = queries answered / wall time. With few queries the
pass is repeated until it lasts at least --min-secs. Recall@k = mean fraction of
the true top-k ids found in the returned top-k (measured on the first pass).
An ef below k is raised to k. bytes_per_vector = RSS growth over the build / N
(for hnswlib it includes ~3 MB of fixed lock tables, noticeable only at small N).
"""
import argparse
import ctypes
import gc
import importlib.metadata
import json
import math
import os
import sys
import threading
import time

import faiss
import hnswlib
import numpy as np
import usearch
from usearch.index import Index as UsearchIndex

M, EF_CONSTRUCTION = 16, 200
LIBC = ctypes.CDLL("libc.so.6")


def rss_bytes():
    """Resident set size, after handing freed heap memory (from an earlier
    engine's index) back to the OS, so that its reuse shows up as growth."""
    gc.collect()
    LIBC.malloc_trim(0)
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def hnswlib_package():
    """Which distribution provides `hnswlib`: upstream or the chroma-hnswlib fork."""
    for name in ("hnswlib", "chroma-hnswlib"):
        try:
            return f"{name} {importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            pass
    return "unknown"


def load(d):
    meta = json.load(open(os.path.join(d, "meta.json")))
    dim, n, q, k = meta["dim"], meta["base"], meta["queries"], meta["k"]
    base = np.fromfile(os.path.join(d, "base.f32"), dtype="<f4").reshape(n, dim)
    queries = np.fromfile(os.path.join(d, "queries.f32"), dtype="<f4").reshape(q, dim)
    truth = np.fromfile(os.path.join(d, "truth.u32"), dtype="<u4").reshape(q, k)
    return meta, base, queries, truth


def normalize(x):
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-30), dtype=np.float32)


def recall(found, truth):
    k = truth.shape[1]
    return float(np.mean([len(set(f[:k].tolist()) & set(t.tolist())) / k
                          for f, t in zip(found, truth)]))


def run_threads(search, queries, nthreads, reps, out=None):
    """T threads, thread t answers queries t, t+T, ... `reps` times. Returns wall secs."""
    barrier = threading.Barrier(nthreads + 1)

    def worker(t):
        # OpenMP's thread count is per OS thread: without this, each worker's
        # faiss call would start its own team of omp_get_num_procs() threads.
        faiss.omp_set_num_threads(1)
        idx = range(t, len(queries), nthreads)
        barrier.wait()
        for _ in range(reps):
            for i in idx:
                labels = search(queries[i])
                if out is not None:
                    out[i] = labels
        barrier.wait()

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(nthreads)]
    for th in threads:
        th.start()
    barrier.wait()
    start = time.perf_counter()
    barrier.wait()
    wall = time.perf_counter() - start
    for th in threads:
        th.join()
    return wall


def measure(search, queries, truth, nthreads, min_secs):
    """First pass gives recall and a time estimate; then repeat to reach min_secs."""
    found = [None] * len(queries)
    wall = run_threads(search, queries, nthreads, 1, found)
    rec, total_q, total_wall = recall(found, truth), len(queries), wall
    if wall < min_secs:
        reps = max(1, math.ceil((min_secs - wall) / max(wall, 1e-9)))
        total_wall = run_threads(search, queries, nthreads, reps)
        total_q = reps * len(queries)
    return rec, total_q / total_wall


def timed_build(build):
    """Run build(); return (index, seconds, RSS growth in bytes)."""
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    index = build()
    secs = time.perf_counter() - t0
    return index, secs, rss_bytes() - rss0


def sweep(meta, set_ef, search, queries, truth, min_secs):
    """Recall and QPS for each ef (or once, if set_ef is None) and thread count."""
    curve = []
    for ef in meta["efs"] if set_ef else [None]:
        if set_ef:
            set_ef(max(ef, truth.shape[1]))
        for T in meta["threads"]:
            rec, qps = measure(search, queries, truth, T, min_secs)
            curve.append(({"ef": ef} if set_ef else {}) | {"threads": T, "recall": rec, "qps": qps})
    return curve


def bench_hnswlib(meta, base, queries, truth, min_secs):
    space = {"l2": "l2", "cosine": "cosine", "dot": "ip"}[meta["metric"]]
    n, dim, k = base.shape[0], base.shape[1], truth.shape[1]

    def build():
        index = hnswlib.Index(space=space, dim=dim)
        index.init_index(max_elements=n, M=M, ef_construction=EF_CONSTRUCTION, random_seed=100)
        index.set_num_threads(max(meta["threads"]))
        index.add_items(base, np.arange(n))
        index.set_num_threads(1)
        return index

    index, secs, grown = timed_build(build)
    curve = sweep(meta, index.set_ef, lambda q: index.knn_query(q, k)[0][0], queries, truth, min_secs)
    return {"build_secs": secs, "bytes_per_vector": grown / n, "bytes_per_vector_est": dim * 4 + M * 2 * 4,
            "M": M, "ef_construction": EF_CONSTRUCTION, "package": hnswlib_package(), "curve": curve}


def bench_faiss(meta, base, queries, truth, min_secs, hnsw):
    """faiss exact (IndexFlat) or IndexHNSWFlat; cosine = inner product on normalized vectors."""
    if meta["metric"] == "cosine":
        base, queries = normalize(base), normalize(queries)
    metric = faiss.METRIC_L2 if meta["metric"] == "l2" else faiss.METRIC_INNER_PRODUCT
    dim, k = base.shape[1], truth.shape[1]

    def build():
        if hnsw:
            index = faiss.IndexHNSWFlat(dim, M, metric)
            index.hnsw.efConstruction = EF_CONSTRUCTION
            faiss.omp_set_num_threads(max(meta["threads"]))
        else:
            index = faiss.IndexFlatL2(dim) if metric == faiss.METRIC_L2 else faiss.IndexFlatIP(dim)
        index.add(np.ascontiguousarray(base))
        return index

    index, secs, grown = timed_build(build)
    set_ef = (lambda ef: setattr(index.hnsw, "efSearch", ef)) if hnsw else None
    search = lambda q: index.search(q.reshape(1, -1), k)[1][0]  # noqa: E731
    out = {"build_secs": secs, "bytes_per_vector": grown / len(base)}
    if hnsw:
        out |= {"M": M, "ef_construction": EF_CONSTRUCTION}
    return out | {"curve": sweep(meta, set_ef, search, queries, truth, min_secs)}


def sweep_batched(meta, set_ef, search_all, truth, min_secs):
    """Like `sweep`, but each pass is one call answering every query on T threads of the
    library's own: for usearch, whose Python binding costs more per call than its search
    (single-query calls from 2 threads ran slower than from 1)."""
    curve = []
    for ef in meta["efs"]:
        set_ef(max(ef, truth.shape[1]))
        for T in meta["threads"]:
            start = time.perf_counter()
            rec, passes = recall(search_all(T), truth), 1
            while time.perf_counter() - start < min_secs:
                search_all(T)
                passes += 1
            qps = passes * len(truth) / (time.perf_counter() - start)
            curve.append({"ef": ef, "threads": T, "recall": rec, "qps": qps})
    return curve


def bench_usearch(meta, base, queries, truth, min_secs, dtype):
    """usearch's HNSW with vectors stored as `dtype` (f32, or f16: half the memory), built
    with the same M and ef_construction. Its i8 is left out: it assumes components in
    [-1, 1] (unit vectors), which this data's are not."""
    metric = {"l2": "l2sq", "cosine": "cos", "dot": "ip"}[meta["metric"]]
    n, dim, k = base.shape[0], base.shape[1], truth.shape[1]
    threads = max(meta["threads"])

    def build():
        index = UsearchIndex(ndim=dim, metric=metric, dtype=dtype, connectivity=M, expansion_add=EF_CONSTRUCTION)
        index.add(np.arange(n, dtype=np.uint64), base, threads=threads)
        return index

    index, secs, grown = timed_build(build)
    set_ef = lambda ef: setattr(index, "expansion_search", ef)  # noqa: E731
    search_all = lambda T: index.search(queries, k, threads=T).keys  # noqa: E731
    return {"build_secs": secs, "bytes_per_vector": grown / n, "M": M, "ef_construction": EF_CONSTRUCTION,
            "package": f"usearch {usearch.__version__}", "dtype": dtype, "batched": True,
            "curve": sweep_batched(meta, set_ef, search_all, truth, min_secs)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--min-secs", type=float, default=1.0,
                    help="repeat each query pass until it lasts this long (0 = one pass)")
    ap.add_argument("--no-faiss-hnsw", action="store_true", help="skip faiss IndexHNSWFlat")
    ap.add_argument("--no-usearch", action="store_true", help="skip usearch")
    args = ap.parse_args()

    meta, base, queries, truth = load(args.dir)
    print(f"data: {base.shape[0]} x {base.shape[1]}, {len(queries)} queries, k={truth.shape[1]}, "
          f"metric={meta['metric']}, threads={meta['threads']}, efs={meta['efs']}", file=sys.stderr)
    out = {"meta": meta}
    out["hnswlib"] = bench_hnswlib(meta, base, queries, truth, args.min_secs)
    out["faiss_exact"] = bench_faiss(meta, base, queries, truth, args.min_secs, hnsw=False)
    if not args.no_faiss_hnsw:
        out["faiss_hnsw"] = bench_faiss(meta, base, queries, truth, args.min_secs, hnsw=True)
    if not args.no_usearch:
        for dtype in ("f32", "f16"):
            out[f"usearch_{dtype}"] = bench_usearch(meta, base, queries, truth, args.min_secs, dtype)
    with open(os.path.join(args.dir, "peer.json"), "w") as f:
        json.dump(out, f, indent=2)

    engines = [(name, res) for name, res in out.items() if name != "meta"]
    print(f"hnswlib package: {out['hnswlib']['package']}")
    print(f"{'engine':<12} {'ef':>5} {'thr':>4} {'recall':>7} {'qps':>10}")
    for name, res in engines:
        for p in res["curve"]:
            print(f"{name:<12} {p.get('ef', '-'):>5} {p['threads']:>4} {p['recall']:>7.4f} {p['qps']:>10.0f}")
    for name, res in engines:
        print(f"{name}: build {res['build_secs']:.2f} s, {res['bytes_per_vector']:.0f} bytes/vector (RSS growth)")
    print(f"wrote {os.path.join(args.dir, 'peer.json')}")


if __name__ == "__main__":
    main()

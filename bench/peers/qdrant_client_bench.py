#!/usr/bin/env python3
"""The Qdrant-client side of `grape-bench qdrant`: upserts and queries through the official
`qdrant-client` against Grape's Qdrant API, over REST or gRPC.

    python qdrant_client_bench.py --url URL [--grpc-port N] --transport rest|grpc --data DIR \\
        --dim D --collection NAME --phase upsert|query [--batch N] [--k K] [--min-secs S]

DIR holds `base.f32` and `queries.f32` (row-major little-endian float32). `upsert` creates the
collection (Euclid) and upserts every base row with id = row in batches (wait=true), and prints
`{"points_per_s": …}`. `query` asks every query once for its hits, then repeats passes until
`--min-secs` have gone by, and prints `{"qps": …, "ids": [[…], …]}`. One client, one call at
a time.
"""

import argparse
import json
import time

import numpy as np
from qdrant_client import QdrantClient, models as m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--grpc-port", type=int)
    ap.add_argument("--transport", choices=["rest", "grpc"], default="rest")
    ap.add_argument("--data", required=True)
    ap.add_argument("--dim", type=int, required=True)
    ap.add_argument("--collection", required=True)
    ap.add_argument("--phase", choices=["upsert", "query"], required=True)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--min-secs", type=float, default=2.0)
    a = ap.parse_args()
    grpc = a.transport == "grpc"
    c = QdrantClient(url=a.url, grpc_port=a.grpc_port or 6334, prefer_grpc=grpc, timeout=600, check_compatibility=False)
    if a.phase == "upsert":
        base = np.fromfile(f"{a.data}/base.f32", dtype="<f4").reshape(-1, a.dim)
        if c.collection_exists(a.collection):
            c.delete_collection(a.collection)
        c.create_collection(a.collection, vectors_config=m.VectorParams(size=a.dim, distance=m.Distance.EUCLID))
        started = time.perf_counter()
        for start in range(0, len(base), a.batch):
            rows = base[start : start + a.batch]
            c.upsert(a.collection, points=m.Batch(ids=list(range(start, start + len(rows))), vectors=rows.tolist()), wait=True)
        print(json.dumps({"points_per_s": len(base) / (time.perf_counter() - started)}))
    else:
        queries = np.fromfile(f"{a.data}/queries.f32", dtype="<f4").reshape(-1, a.dim).tolist()

        def ask(q):
            return [p.id for p in c.query_points(a.collection, query=q, limit=a.k).points]

        ids = [ask(q) for q in queries]  # also warms the connection
        started, answered = time.perf_counter(), 0
        while answered == 0 or time.perf_counter() - started < a.min_secs:
            for q in queries:
                ask(q)
            answered += len(queries)
        print(json.dumps({"qps": answered / (time.perf_counter() - started), "ids": ids}))


if __name__ == "__main__":
    main()

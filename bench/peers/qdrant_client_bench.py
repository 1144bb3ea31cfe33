#!/usr/bin/env python3
"""The Qdrant-client side of `grape-bench qdrant`: upserts and queries through the official
`qdrant-client` against Grape's Qdrant API, over REST or gRPC.

    python qdrant_client_bench.py --url URL [--grpc-port N] --transport rest|grpc --data DIR \\
        --dim D --collection NAME --phase upsert|query|count|index [--batch N] [--k K] \\
        [--min-secs S] [--payloads] [--filter JSON] [--indexes KEY:TYPE,…] [--keep-alive]

DIR holds `base.f32` and `queries.f32` (row-major little-endian float32). `upsert` creates the
collection (Euclid) and upserts every base row with id = row in batches (wait=true), with
`--payloads` each with the payload `{"cat": "c<row % 100>", "n": row % 1000}`, and prints
`{"points_per_s": …}`. `query` asks every query once for its hits, then repeats passes until
`--min-secs` have gone by, and prints `{"qps": …, "asked": …, "ids": [[…], …]}` (`asked`: queries in all,
the first pass included). `count` repeats an exact
count for as long and prints `{"qps": …, "count": …}`. Both take `--filter` (Qdrant's filter
JSON). `index` creates the payload indexes `--indexes` and prints `{"seconds": …}`. One
client, one call at a time. Over REST to 127.0.0.1 the client opens a TCP connection per call
(its own choice for local hosts); `--keep-alive` gives it a connection pool, as it has for a
remote host.
"""

import argparse
import json
import time

import httpx
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
    ap.add_argument("--phase", choices=["upsert", "query", "count", "index"], required=True)
    ap.add_argument("--payloads", action="store_true")
    ap.add_argument("--filter", type=json.loads, default=None)
    ap.add_argument("--indexes", default="")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--min-secs", type=float, default=2.0)
    ap.add_argument("--keep-alive", action="store_true")
    a = ap.parse_args()
    grpc = a.transport == "grpc"
    # qdrant-client turns HTTP keep-alive off when the host is localhost or 127.0.0.1 (a new
    # TCP connection per call); --keep-alive gives it the pool it uses for any other host.
    extra = {"limits": httpx.Limits()} if a.keep_alive else {}
    c = QdrantClient(url=a.url, grpc_port=a.grpc_port or 6334, prefer_grpc=grpc, timeout=600, check_compatibility=False, **extra)
    flt = m.Filter(**a.filter) if a.filter else None
    if a.phase == "index":
        started = time.perf_counter()
        for spec in filter(None, a.indexes.split(",")):
            key, kind = spec.split(":")
            c.create_payload_index(a.collection, field_name=key, field_schema=kind, wait=True)
        print(json.dumps({"seconds": time.perf_counter() - started}))
    elif a.phase == "count":
        count = c.count(a.collection, count_filter=flt, exact=True).count
        started, answered = time.perf_counter(), 0
        while answered == 0 or time.perf_counter() - started < a.min_secs:
            c.count(a.collection, count_filter=flt, exact=True)
            answered += 1
        print(json.dumps({"qps": answered / (time.perf_counter() - started), "count": count}))
    elif a.phase == "upsert":
        base = np.fromfile(f"{a.data}/base.f32", dtype="<f4").reshape(-1, a.dim)
        if c.collection_exists(a.collection):
            c.delete_collection(a.collection)
        c.create_collection(a.collection, vectors_config=m.VectorParams(size=a.dim, distance=m.Distance.EUCLID))
        started = time.perf_counter()
        for start in range(0, len(base), a.batch):
            rows = base[start : start + a.batch]
            ids = list(range(start, start + len(rows)))
            payloads = [{"cat": f"c{i % 100}", "n": i % 1000} for i in ids] if a.payloads else None
            c.upsert(a.collection, points=m.Batch(ids=ids, vectors=rows.tolist(), payloads=payloads), wait=True)
        print(json.dumps({"points_per_s": len(base) / (time.perf_counter() - started)}))
    else:
        queries = np.fromfile(f"{a.data}/queries.f32", dtype="<f4").reshape(-1, a.dim).tolist()

        def ask(q):
            return [p.id for p in c.query_points(a.collection, query=q, query_filter=flt, limit=a.k).points]

        ids = [ask(q) for q in queries]  # also warms the connection
        started, answered = time.perf_counter(), 0
        while answered == 0 or time.perf_counter() - started < a.min_secs:
            for q in queries:
                ask(q)
            answered += len(queries)
        print(json.dumps({"qps": answered / (time.perf_counter() - started), "asked": answered + len(ids), "ids": ids}))


if __name__ == "__main__":
    main()

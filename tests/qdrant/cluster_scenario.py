#!/usr/bin/env python3
"""Qdrant clients against a Grape cluster while a compute node dies.

    python cluster_scenario.py --url URL [--grpc-port N] [--collection NAME] --phase setup
    python cluster_scenario.py --url URL [--grpc-port N] [--collection NAME] --phase load --seconds 10

With `--grpc-port` the client talks gRPC (`prefer_grpc`). `setup` creates the collection
(default `conf_cluster`; 2 shards, replication_factor 2) and upserts 1,500 points in
three batches. `load` keeps calling Grape through one gateway for the given time (queries,
counts, scroll pages, retrieves, upserts and payload edits), doing the same on the client's
local mode, and compares every answer. The test that runs it SIGKILLs another compute node
midway: every call must still succeed with the local mode's answer. It ends with the line
`N passed, N failed` and exits 0 iff no call failed.
"""

import argparse
import random
import sys
import time

from qdrant_client import QdrantClient, models as m

NAME = "conf_cluster"  # set from --collection
DIM = 16
BATCHES = 3
PER_BATCH = 500


def vector(rng):
    return [rng.uniform(-1, 1) for _ in range(DIM)]


def points(batch):
    rng = random.Random(batch)
    base = batch * PER_BATCH
    return [m.PointStruct(id=base + i, vector=vector(rng), payload={"g": (base + i) % 5, "n": base + i}) for i in range(PER_BATCH)]


def setup(c):
    c.create_collection(NAME, vectors_config=m.VectorParams(size=DIM, distance=m.Distance.COSINE), shard_number=2, replication_factor=2)
    for batch in range(BATCHES):
        c.upsert(NAME, points=points(batch), wait=True)


def reference():
    ref = QdrantClient(":memory:")
    setup(ref)
    return ref


def ids(found):
    return [p.id for p in found]


def operations(rng, step):
    """One call by its name and a function of a client returning a comparable answer."""
    q = vector(rng)
    g = rng.randrange(5)
    flt = m.Filter(must=[m.FieldCondition(key="g", match=m.MatchValue(value=g))])
    some = rng.sample(range(BATCHES * PER_BATCH), 5)
    new_id = 100_000 + step
    return [
        ("query", lambda c: ids(c.query_points(NAME, query=q, limit=10, search_params=m.SearchParams(exact=True)).points)),
        ("query_filtered", lambda c: ids(c.query_points(NAME, query=q, query_filter=flt, limit=5, search_params=m.SearchParams(exact=True)).points)),
        ("count", lambda c: c.count(NAME, count_filter=flt, exact=True).count),
        ("scroll", lambda c: (lambda page: (ids(page[0]), page[1]))(c.scroll(NAME, limit=7, offset=some[0], scroll_filter=flt))),
        ("retrieve", lambda c: sorted((r.id, r.payload["n"]) for r in c.retrieve(NAME, ids=some, with_payload=True))),
        ("upsert", lambda c: c.upsert(NAME, points=[m.PointStruct(id=new_id, vector=q, payload={"g": g, "n": new_id})], wait=True).status.value),
        ("set_payload", lambda c: c.set_payload(NAME, payload={"touched": step}, points=[some[1]], wait=True).status.value),
    ]


def load(c, seconds):
    ref = reference()
    rng = random.Random(7)
    passed = failed = 0
    end = time.time() + seconds
    step = 0
    while time.time() < end:
        for name, call in operations(rng, step):
            expected = call(ref)
            try:
                got = call(c)
            except Exception as e:  # noqa: BLE001 - any failed call is what the test counts
                failed += 1
                print(f"FAIL {name} (step {step}): {type(e).__name__}: {str(e)[:300]}", flush=True)
                continue
            if got != expected:
                failed += 1
                print(f"FAIL {name} (step {step}): got {got}, expected {expected}", flush=True)
            else:
                passed += 1
        step += 1
    print(f"{passed} passed, {failed} failed")
    return failed == 0


def main():
    global NAME
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--phase", choices=["setup", "load"], required=True)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--collection", default=NAME)
    ap.add_argument("--grpc-port", type=int)
    args = ap.parse_args()
    NAME = args.collection
    grpc = args.grpc_port is not None
    c = QdrantClient(url=args.url, grpc_port=args.grpc_port or 6334, prefer_grpc=grpc, timeout=60, check_compatibility=False)
    if args.phase == "setup":
        setup(c)
        return 0
    return 0 if load(c, args.seconds) else 1


if __name__ == "__main__":
    sys.exit(main())

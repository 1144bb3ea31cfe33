#!/usr/bin/env python3
"""Qdrant REST conformance suite for Grape.

Runs the same scenario steps with the official `qdrant-client` against Grape's Qdrant-compatible
API and against the client's own local mode (`QdrantClient(":memory:")`), and compares them.

    python conformance.py --url http://127.0.0.1:6333 [--grpc-port N --prefer-grpc] [--only NAME]

Each step is a function `step_NAME(c)` that gets a client and returns a JSON-able result. The
runner calls it once per client and compares the two results (see `diff`): ids and their order
exactly (a permutation is only tolerated among scores tied within 1e-6), scores and vectors
within 1e-4 (relative for big values), everything else (payloads, counts, offsets) exactly.

Error cases go through `expect_error`: on Grape the call must fail with the HTTP status the step
names (or the matching gRPC code); on local mode any exception is accepted, since it raises
ValueError/KeyError/TypeError rather than HTTP errors.

`--self-test [memory|path]` compares `:memory:` with a second local-mode client instead of Grape,
to check that every step runs and is deterministic without a server.
"""

import argparse
import fnmatch
import json
import math
import random
import shutil
import sys
import tempfile
import time
import traceback
import uuid
import warnings
import zlib
from datetime import datetime, timedelta, timezone

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse
from qdrant_client.local.qdrant_local import QdrantLocal

try:
    import grpc  # the client depends on it; only needed with --prefer-grpc
except ImportError:  # pragma: no cover
    grpc = None

M = models
# local mode warns that search_params have no effect there; it is searched exactly anyway
warnings.filterwarnings("ignore", message="Local mode performs exact")
# bad_malformed_filter serializes deliberately invalid models
warnings.filterwarnings("ignore", message="Pydantic serializer warnings")
# local mode ignores payload indexes (Grape records them); the steps compare what they return
warnings.filterwarnings("ignore", message="Payload indexes have no effect")
COS, EUC, DOT, MAN = M.Distance.COSINE, M.Distance.EUCLID, M.Distance.DOT, M.Distance.MANHATTAN

PREFER_GRPC = False  # set from the command line; some REST-only steps skip under gRPC
REST_URL = {}  # id(client) -> base URL of the REST API, for the endpoints the client lacks
VERBOSE = False

# ---------------------------------------------------------------------------------------------
# helpers


class SkipStep(Exception):
    """Raised by a step that cannot run with this client or mode (reported as `skip`)."""


def is_local(c):
    return isinstance(getattr(c, "_client", None), QdrantLocal)


def rng_for(name):
    """A random generator seeded from a name, so both sides generate the same data."""
    return random.Random(zlib.crc32(name.encode()))


def vec(rng, dim):
    return [rng.uniform(-1.0, 1.0) for _ in range(dim)]


def uid(rng):
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class fresh:
    """`with fresh(c, name, dim, distance) as name:` a new empty collection, deleted afterwards.
    With `named={vector name: (dim, distance)}` it has those named vectors instead."""

    def __init__(self, c, name, dim=8, distance=COS, named=None):
        assert name.startswith("conf_"), name
        self.c, self.name, self.dim, self.distance, self.named = c, name, dim, distance, named

    def __enter__(self):
        drop(self.c, self.name)
        if self.named:
            config = {v: M.VectorParams(size=d, distance=m) for v, (d, m) in self.named.items()}
        else:
            config = M.VectorParams(size=self.dim, distance=self.distance)
        self.c.create_collection(self.name, vectors_config=config)
        return self.name

    def __exit__(self, *exc):
        try:
            drop(self.c, self.name)
        except Exception:
            pass
        return False


def drop(c, name):
    if c.collection_exists(name):
        c.delete_collection(name)


def status(update_result):
    s = update_result.status
    return getattr(s, "value", s)


def upsert(c, name, points):
    return status(c.upsert(name, points=points, wait=True))


def payload_of(p):
    """A point's payload as compared. Over gRPC an empty payload and no payload are the same
    message (an empty map), which qdrant-client reads back as None for scored points and as {}
    for retrieved ones whatever was asked, against any server; so both read as None there."""
    return (p or None) if PREFER_GRPC else p


def rec(r):
    return {"id": r.id, "payload": payload_of(r.payload), "vector": r.vector}


def recs(records, sort=False):
    out = [rec(r) for r in records]
    if sort:  # Qdrant does not define the order of `retrieve` results
        out.sort(key=lambda r: id_key(r["id"]))
    return out


def hit(p):
    return {"id": p.id, "score": p.score, "payload": payload_of(p.payload), "vector": p.vector}


def hits(points):
    return [hit(p) for p in points]


def id_key(i):
    """Qdrant's id order: all integer ids first, then UUIDs (as 128-bit numbers)."""
    return (1, uuid.UUID(i).int) if isinstance(i, str) else (0, i)


def ids_of(records):
    return [r.id for r in records]


def scroll_pages(c, name, flt=None, limit=10, offset=None, with_payload=False, with_vectors=False):
    """Pages through a scroll, returning every page's ids and next_page_offset."""
    pages = []
    while True:
        records, nxt = c.scroll(
            name,
            scroll_filter=flt,
            limit=limit,
            offset=offset,
            with_payload=with_payload,
            with_vectors=with_vectors,
        )
        page = {"next": nxt, "points": recs(records) if (with_payload or with_vectors) else ids_of(records)}
        pages.append(page)
        if nxt is None or len(pages) > 1000:
            return pages
        offset = nxt


def scroll_ids(c, name, flt=None):
    ids = []
    for page in scroll_pages(c, name, flt=flt, limit=1000):
        ids.extend(page["points"])
    return ids


GRPC_CODES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 409: "ALREADY_EXISTS", 422: "INVALID_ARGUMENT"}


class RawHttpError(Exception):
    def __init__(self, status_code, body):
        super().__init__(f"HTTP {status_code}: {body[:300]}")
        self.status_code = status_code


def error_kind(e):
    if isinstance(e, (UnexpectedResponse, RawHttpError)):
        return ("http", e.status_code)
    if grpc is not None and isinstance(e, grpc.RpcError) and hasattr(e, "code"):
        return ("grpc", e.code().name)
    return ("client", type(e).__name__)


def expect_error(c, http_status, fn, local_may_accept=False, grpc_client_side_ok=False):
    """Runs `fn()`, which must fail. Returns "error" when it failed as expected.

    On Grape the failure must be an HTTP error with `http_status` (or, over gRPC, the code it
    maps to); on local mode any exception will do. With `local_may_accept` local mode does not
    reject the input at all (it is laxer than the server), so it is not run there. With
    `grpc_client_side_ok`, over gRPC the client itself may refuse the input before sending it
    (protobuf cannot carry it), which says nothing about Grape and is accepted.
    """
    if is_local(c) and local_may_accept:
        return "error"
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - classified below
        kind = error_kind(e)
        if is_local(c):
            if VERBOSE:
                print(f"    local raised {type(e).__name__}: {str(e)[:150]}", file=sys.stderr)
            return "error"
        if kind == ("http", http_status) or kind == ("grpc", GRPC_CODES.get(http_status)):
            return "error"
        if PREFER_GRPC and grpc_client_side_ok and kind[0] == "client":
            return "error"
        return f"expected HTTP {http_status}, got {kind[0]} {kind[1]}: {str(e)[:300]}"
    return "no error"


def raw_post(c, path, body):
    """POSTs to Grape's REST API directly, for endpoints that this client version dropped."""
    import httpx

    r = httpx.post(REST_URL[id(c)].rstrip("/") + path, json=body, timeout=30)
    if r.status_code != 200:
        raise RawHttpError(r.status_code, r.text)
    return r.json()["result"]


def jd(model):
    return model.model_dump(mode="json", exclude_none=True) if model is not None else None


def raw_hit(h):
    return {"id": h["id"], "score": h["score"], "payload": h.get("payload"), "vector": h.get("vector")}


# ---------------------------------------------------------------------------------------------
# comparison

ABS_TOL = 1e-4
TIE = 1e-6


def close(a, b):
    return abs(a - b) <= ABS_TOL * max(1.0, abs(a), abs(b))


def is_num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def short(x, n=240):
    s = json.dumps(x, default=str) if not isinstance(x, str) else repr(x)
    return s if len(s) <= n else s[: n - 3] + "..."


def is_hits(x):
    return (
        isinstance(x, list)
        and len(x) > 0
        and all(isinstance(e, dict) and "id" in e and "score" in e for e in x)
    )


def diff(exp, got, path="$", tol=False):
    """First difference between the expected (local mode) and the got (Grape) result, or None."""
    if is_hits(exp) and is_hits(got):
        return diff_hits(exp, got, path)
    if isinstance(exp, dict) and isinstance(got, dict):
        for k in exp:
            if k not in got:
                return f"{path}.{k}: missing (expected {short(exp[k])})"
        for k in got:
            if k not in exp:
                return f"{path}.{k}: unexpected key (got {short(got[k])})"
        for k in exp:
            d = diff(exp[k], got[k], f"{path}.{k}", tol or k in ("score", "vector", "vectors"))
            if d:
                return d
        return None
    if isinstance(exp, (list, tuple)) and isinstance(got, (list, tuple)):
        if len(exp) != len(got):
            return f"{path}: length {len(got)} != expected {len(exp)}: got {short(got)}, expected {short(exp)}"
        for i, (a, b) in enumerate(zip(exp, got)):
            d = diff(a, b, f"{path}[{i}]", tol)
            if d:
                return d
        return None
    if tol and is_num(exp) and is_num(got):
        return None if close(exp, got) else f"{path}: {got!r} != expected {exp!r} (tolerance {ABS_TOL})"
    if type(exp) is not type(got):
        return f"{path}: got {type(got).__name__} {short(got)}, expected {type(exp).__name__} {short(exp)}"
    if exp != got:
        return f"{path}: got {short(got)}, expected {short(exp)}"
    return None


def diff_hits(exp, got, path):
    """Scored points: same length, scores close, ids in the same order except among ties."""
    if len(exp) != len(got):
        return (
            f"{path}: {len(got)} hits != expected {len(exp)}: "
            f"got ids {short([h['id'] for h in got])}, expected {short([h['id'] for h in exp])}"
        )
    for i, (a, b) in enumerate(zip(exp, got)):
        if not (is_num(a["score"]) and is_num(b["score"]) and close(a["score"], b["score"])):
            return (
                f"{path}[{i}].score: got {b['score']!r} (id {b['id']!r}), "
                f"expected {a['score']!r} (id {a['id']!r})"
            )
    i = 0
    while i < len(exp):
        j = i
        while j + 1 < len(exp) and abs(exp[j + 1]["score"] - exp[i]["score"]) <= TIE * max(1.0, abs(exp[i]["score"])):
            j += 1
        group_exp = exp[i : j + 1]
        by_id = {json.dumps(h["id"]): h for h in got[i : j + 1]}
        for k, e in enumerate(group_exp):
            g = by_id.get(json.dumps(e["id"]))
            if g is None:
                return (
                    f"{path}[{i + k}].id: got ids {short([h['id'] for h in got])}, "
                    f"expected {short([h['id'] for h in exp])}"
                )
            rest_e = {k2: v for k2, v in e.items() if k2 != "score"}
            rest_g = {k2: v for k2, v in g.items() if k2 != "score"}
            d = diff(rest_e, rest_g, f"{path}[{i + k}]")
            if d:
                return d
        i = j + 1
    return None


# ---------------------------------------------------------------------------------------------
# steps: collections


def collection_info(c, name):
    info = c.get_collection(name)
    params = info.config.params.vectors

    def one(p):
        return {"size": p.size, "distance": getattr(p.distance, "value", p.distance)}

    if isinstance(params, dict):
        return {"points_count": info.points_count, "vectors": {v: one(p) for v, p in sorted(params.items())}}
    return {"points_count": info.points_count, **one(params)}


def step_collections(c):
    names = {"conf_col_cosine": (COS, 4), "conf_col_euclid": (EUC, 5), "conf_col_dot": (DOT, 6), "conf_col_manhattan": (MAN, 7)}
    rng = rng_for("collections")
    for n in names:
        drop(c, n)
    out = {"exists_before": [c.collection_exists(n) for n in names]}
    try:
        out["create"] = [
            c.create_collection(n, vectors_config=M.VectorParams(size=dim, distance=d))
            for n, (d, dim) in names.items()
        ]
        out["exists"] = [c.collection_exists(n) for n in names]
        listed = [x.name for x in c.get_collections().collections]
        out["listed"] = sorted(x for x in listed if x.startswith("conf_col_"))
        out["info_empty"] = {n: collection_info(c, n) for n in names}
        for k, (n, (d, dim)) in enumerate(names.items()):
            pts = [M.PointStruct(id=i, vector=vec(rng, dim)) for i in range(3 + k)]
            out["upsert_" + n] = upsert(c, n, pts)
        out["info"] = {n: collection_info(c, n) for n in names}
        out["delete"] = [c.delete_collection(n) for n in names]
        out["exists_after"] = [c.collection_exists(n) for n in names]
        listed = [x.name for x in c.get_collections().collections]
        out["listed_after"] = sorted(x for x in listed if x.startswith("conf_col_"))
    finally:
        for n in names:
            drop(c, n)
    return out


def step_collections_delete_missing(c):
    drop(c, "conf_col_missing")
    return {"deleted": c.delete_collection("conf_col_missing"), "exists": c.collection_exists("conf_col_missing")}


def step_collections_on_disk(c):
    """Vectors kept on disk (`on_disk=True`) are searched as vectors in memory are."""
    rng = rng_for("collections_on_disk")
    n = "conf_col_on_disk"
    drop(c, n)
    try:
        c.create_collection(n, vectors_config=M.VectorParams(size=8, distance=EUC, on_disk=True))
        query_collection(c, n, rng)
        q = vec(rng, 8)
        return {
            "on_disk": c.get_collection(n).config.params.vectors.on_disk,
            "hits": hits(c.query_points(n, query=q, limit=10).points),
        }
    finally:
        drop(c, n)


# ---------------------------------------------------------------------------------------------
# steps: upsert


PAYLOAD_TYPES = {
    "s": "héllo wörld ✓ 日本",
    "empty_s": "",
    "esc": 'quote" backslash\\ newline\n tab\t',
    "i": 42,
    "neg": -7,
    "zero": 0,
    "big": 2**53,
    "f": 3.25,
    "f2": -0.001,
    "f_huge": 1.5e300,
    "f_tiny": 2.5e-300,
    "f_int_like": 2.0,
    "t": True,
    "fl": False,
    "n": None,
    "arr": [1, "two", 3.5, None, True, {"x": 1}, [2, 3]],
    "obj": {"a": {"b": {"c": [1, 2]}, "d": None}, "e": "f"},
    "empty_obj": {},
    "empty_arr": [],
}


def step_upsert_int_ids(c):
    rng = rng_for("upsert_int_ids")
    with fresh(c, "conf_up_int", 6, COS) as n:
        ids = [5, 1, 0, 17, 3, 100, 42, 7]
        pts = [M.PointStruct(id=i, vector=vec(rng, 6), payload={"i": i, "name": f"p{i}"}) for i in ids]
        return {
            "upsert": upsert(c, n, pts),
            "count": c.count(n, exact=True).count,
            "retrieve": recs(c.retrieve(n, ids, with_payload=True, with_vectors=True), sort=True),
            "scroll": scroll_pages(c, n, limit=100, with_payload=True),
        }


def step_upsert_big_int_ids(c):
    """Integer ids are u64: beyond f64's exact range and beyond i64."""
    rng = rng_for("upsert_big_int_ids")
    with fresh(c, "conf_up_bigint", 4, DOT) as n:
        ids = [2**53 + 1, 2**63 + 5, 2**64 - 1, 2**32, 1]
        pts = [M.PointStruct(id=i, vector=vec(rng, 4), payload={"k": k}) for k, i in enumerate(ids)]
        q = vec(rng, 4)
        return {
            "upsert": upsert(c, n, pts),
            "retrieve": recs(c.retrieve(n, ids, with_vectors=True), sort=True),
            "scroll": scroll_pages(c, n, limit=2),
            "query": hits(c.query_points(n, query=q, limit=5).points),
            "has_id": c.count(n, count_filter=M.Filter(must=[M.HasIdCondition(has_id=[2**63 + 5])]), exact=True).count,
        }


def step_upsert_uuid_ids(c):
    rng = rng_for("upsert_uuid_ids")
    with fresh(c, "conf_up_uuid", 5, EUC) as n:
        uids = [uid(rng) for _ in range(8)]
        pts = [M.PointStruct(id=u, vector=vec(rng, 5), payload={"k": k}) for k, u in enumerate(uids)]
        pts += [M.PointStruct(id=i, vector=vec(rng, 5), payload={"int": i}) for i in (9, 2, 1000)]
        return {
            "upsert": upsert(c, n, pts),
            "count": c.count(n, exact=True).count,
            "retrieve": recs(c.retrieve(n, uids[:4] + [2, uid(rng)], with_vectors=True), sort=True),
            # mixed int and UUID ids: scroll order is defined by Qdrant (ints, then UUIDs)
            "scroll": scroll_pages(c, n, limit=4, with_payload=True),
            "scroll_from_uuid": scroll_pages(c, n, limit=3, offset=sorted(uids)[3]),
        }


def step_upsert_uuid_spellings(c):
    """Qdrant accepts simple, uppercase, braced and urn UUID spellings and answers canonical ones."""
    rng = rng_for("upsert_uuid_spellings")
    with fresh(c, "conf_up_uuidsp", 3, COS) as n:
        us = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(4)]
        spell = [str(us[0]).upper(), us[1].hex, "{" + str(us[2]) + "}", us[3].urn]
        pts = [M.PointStruct(id=s, vector=vec(rng, 3)) for s in spell]
        return {
            "upsert": upsert(c, n, pts),
            "scroll": scroll_pages(c, n),
            "retrieve_canonical": recs(c.retrieve(n, [str(u) for u in us]), sort=True),
            "retrieve_spelled": recs(c.retrieve(n, [us[0].hex, str(us[1]).upper()]), sort=True),
        }


def step_upsert_batch(c):
    rng = rng_for("upsert_batch")
    with fresh(c, "conf_up_batch", 4, DOT) as n:
        u = uid(rng)
        batch = M.Batch(
            ids=[1, 2, u, 4],
            vectors=[vec(rng, 4) for _ in range(4)],
            payloads=[{"a": 1}, {"b": [1, 2]}, {"c": {"d": "e"}}, {}],
        )
        r1 = status(c.upsert(n, points=batch, wait=True))
        batch2 = M.Batch(ids=[10, 11], vectors=[vec(rng, 4) for _ in range(2)])  # no payloads
        r2 = status(c.upsert(n, points=batch2, wait=True))
        return {
            "upsert": [r1, r2],
            "count": c.count(n, exact=True).count,
            "scroll": scroll_pages(c, n, limit=100, with_payload=True, with_vectors=True),
        }


def step_upsert_replace(c):
    rng = rng_for("upsert_replace")
    with fresh(c, "conf_up_replace", 4, COS) as n:
        upsert(c, n, [M.PointStruct(id=i, vector=vec(rng, 4), payload={"v": 1, "keep": i}) for i in range(5)])
        # re-upsert replaces the whole point: the old payload keys are gone
        upsert(c, n, [M.PointStruct(id=2, vector=vec(rng, 4), payload={"v": 2})])
        upsert(c, n, [M.PointStruct(id=3, vector=vec(rng, 4))])  # no payload: becomes empty
        q = vec(rng, 4)
        return {
            "count": c.count(n, exact=True).count,
            "info_points": c.get_collection(n).points_count,
            "scroll": scroll_pages(c, n, limit=100, with_payload=True, with_vectors=True),
            "query": hits(c.query_points(n, query=q, limit=5, with_payload=True).points),
        }


def step_upsert_payload_types(c):
    rng = rng_for("upsert_payload_types")
    with fresh(c, "conf_up_types", 3, EUC) as n:
        pts = [
            M.PointStruct(id=1, vector=vec(rng, 3), payload=PAYLOAD_TYPES),
            M.PointStruct(id=2, vector=vec(rng, 3), payload={"only": None}),
            M.PointStruct(id=3, vector=vec(rng, 3), payload={}),
            M.PointStruct(id=4, vector=vec(rng, 3), payload={"deep": {"l1": {"l2": {"l3": {"l4": [[{"x": [True]}]]}}}}}),
        ]
        return {
            "upsert": upsert(c, n, pts),
            "retrieve": recs(c.retrieve(n, [1, 2, 3, 4], with_payload=True), sort=True),
            "query": hits(c.query_points(n, query=[0.1, 0.2, 0.3], limit=4, with_payload=True).points),
        }


def step_upsert_vectors_cosine_normalized(c):
    """Cosine collections store (and return) vectors normalized to unit length."""
    with fresh(c, "conf_up_norm", 3, COS) as n:
        upsert(c, n, [
            M.PointStruct(id=1, vector=[3.0, 4.0, 0.0]),
            M.PointStruct(id=2, vector=[0.0, 0.0, 10.0]),
            M.PointStruct(id=3, vector=[1e-3, 2e-3, -2e-3]),
        ])
        return {
            "retrieve": recs(c.retrieve(n, [1, 2, 3], with_vectors=True), sort=True),
            "query": hits(c.query_points(n, query=[6.0, 8.0, 0.0], limit=3, with_vectors=True).points),
        }


def step_upsert_vectors_raw(c):
    """Euclid and Dot collections keep vectors as given."""
    out = {}
    for dist, name in ((EUC, "conf_up_raw_euc"), (DOT, "conf_up_raw_dot")):
        with fresh(c, name, 3, dist) as n:
            upsert(c, n, [M.PointStruct(id=1, vector=[3.0, 4.0, 0.0]), M.PointStruct(id=2, vector=[-1.5, 0.25, 8.0])])
            out[name] = {
                "retrieve": recs(c.retrieve(n, [1, 2], with_vectors=True), sort=True),
                "query": hits(c.query_points(n, query=[1.0, 1.0, 1.0], limit=2).points),
            }
    return out


# ---------------------------------------------------------------------------------------------
# steps: retrieve


def retrieve_collection(c, n, rng):
    pts = []
    for i in range(1, 11):
        pts.append(M.PointStruct(
            id=i,
            vector=vec(rng, 4),
            payload={"a": i, "b": {"c": i * 2, "d": "x" * i}, "e": [i, {"f": i}], "g": i % 2 == 0},
        ))
    upsert(c, n, pts)


def step_retrieve(c):
    rng = rng_for("retrieve")
    with fresh(c, "conf_retrieve", 4, DOT) as n:
        retrieve_collection(c, n, rng)
        ids = [3, 1, 999, 5, 10]
        r = lambda **kw: recs(c.retrieve(n, ids, **kw), sort=True)  # noqa: E731
        return {
            "default": r(),
            "payload_true": r(with_payload=True, with_vectors=False),
            "payload_false": r(with_payload=False, with_vectors=True),
            "keys": r(with_payload=["a", "g"]),
            "include": r(with_payload=M.PayloadSelectorInclude(include=["b"])),
            "exclude": r(with_payload=M.PayloadSelectorExclude(exclude=["a", "e"])),
            "missing_only": r_missing(c, n),
            "empty_ids": recs(c.retrieve(n, [])),
        }


def r_missing(c, n):
    return recs(c.retrieve(n, [12345, 54321]))


def step_retrieve_nested_selectors(c):
    rng = rng_for("retrieve")
    with fresh(c, "conf_retrieve_nested", 4, DOT) as n:
        retrieve_collection(c, n, rng)
        ids = [2, 7]
        r = lambda sel: recs(c.retrieve(n, ids, with_payload=sel), sort=True)  # noqa: E731
        return {
            "keys": r(["b.c", "a"]),
            "include": r(M.PayloadSelectorInclude(include=["b.d"])),
            "exclude": r(M.PayloadSelectorExclude(exclude=["b.c", "e"])),
        }


# ---------------------------------------------------------------------------------------------
# steps: delete, count


def group_collection(c, n, rng, count=30, dim=4):
    pts = [
        M.PointStruct(id=i, vector=vec(rng, dim), payload={"group": i % 3, "i": i, "name": f"n{i}"})
        for i in range(count)
    ]
    return upsert(c, n, pts)


def step_delete_points(c):
    rng = rng_for("delete_points")
    with fresh(c, "conf_delete", 4, COS) as n:
        group_collection(c, n, rng)
        q = vec(rng, 4)
        out = {"count0": c.count(n, exact=True).count}
        out["del_ids"] = status(c.delete(n, points_selector=M.PointIdsList(points=[1, 2, 3, 999]), wait=True))
        out["count1"] = c.count(n, exact=True).count
        out["del_list"] = status(c.delete(n, points_selector=[4, 5], wait=True))
        out["count2"] = c.count(n, exact=True).count
        flt = M.Filter(must=[M.FieldCondition(key="group", match=M.MatchValue(value=1))])
        out["del_filter"] = status(c.delete(n, points_selector=M.FilterSelector(filter=flt), wait=True))
        out["count3"] = c.count(n, exact=True).count
        out["count_group1"] = c.count(n, count_filter=flt, exact=True).count
        out["scroll"] = scroll_ids(c, n)
        out["retrieve_deleted"] = recs(c.retrieve(n, [1, 4, 7, 0]), sort=True)
        out["query"] = hits(c.query_points(n, query=q, limit=30).points)
        # a deleted id can be upserted again
        upsert(c, n, [M.PointStruct(id=2, vector=vec(rng, 4), payload={"back": True})])
        out["revived"] = recs(c.retrieve(n, [2]))
        out["count4"] = c.count(n, exact=True).count
        return out


def step_count(c):
    rng = rng_for("count")
    with fresh(c, "conf_count", 4, EUC) as n:
        empty = c.count(n, exact=True).count
        group_collection(c, n, rng, count=50)
        g = lambda v: M.FieldCondition(key="group", match=M.MatchValue(value=v))  # noqa: E731
        return {
            "empty": empty,
            "all": c.count(n, exact=True).count,
            "group0": c.count(n, count_filter=M.Filter(must=[g(0)]), exact=True).count,
            "not_group0": c.count(n, count_filter=M.Filter(must_not=[g(0)]), exact=True).count,
            "none": c.count(n, count_filter=M.Filter(must=[g(7)]), exact=True).count,
        }


# ---------------------------------------------------------------------------------------------
# steps: payload updates


def payload_collection(c, n, rng):
    pts = [
        M.PointStruct(
            id=i,
            vector=vec(rng, 3),
            payload={"a": i, "b": "x", "group": i % 2, "obj": {"p": i, "q": [1, 2]}, "arr": [{"k": 1}, {"k": 2}]},
        )
        for i in range(1, 7)
    ]
    upsert(c, n, pts)


def payload_snapshot(c, n):
    return recs(c.retrieve(n, list(range(1, 7)), with_payload=True), sort=True)


GROUP1 = M.Filter(must=[M.FieldCondition(key="group", match=M.MatchValue(value=1))])


def payload_step(name, action):
    def step(c):
        rng = rng_for("payload")
        with fresh(c, "conf_" + name, 3, COS) as n:
            payload_collection(c, n, rng)
            result = action(c, n)
            return {"result": getattr(result, "status", None) and status(result), "points": payload_snapshot(c, n)}

    step.__name__ = "step_" + name
    return step


step_payload_set_ids = payload_step(
    "payload_set_ids", lambda c, n: c.set_payload(n, payload={"a": "new", "c": [1, None]}, points=[1, 3], wait=True)
)
step_payload_set_filter = payload_step(
    "payload_set_filter", lambda c, n: c.set_payload(n, payload={"z": {"y": 1}}, points=GROUP1, wait=True)
)
step_payload_set_selector = payload_step(
    "payload_set_selector",
    lambda c, n: c.set_payload(n, payload={"z": 0}, points=M.FilterSelector(filter=GROUP1), wait=True),
)
step_payload_set_key = payload_step(
    "payload_set_key", lambda c, n: c.set_payload(n, payload={"deep": 1}, points=[1, 2], key="obj", wait=True)
)
step_payload_set_key_nested = payload_step(
    "payload_set_key_nested",
    lambda c, n: c.set_payload(n, payload={"deep": 1}, points=[1, 2], key="obj.new.inner", wait=True),
)
step_payload_overwrite_ids = payload_step(
    "payload_overwrite_ids", lambda c, n: c.overwrite_payload(n, payload={"only": True}, points=[2, 4], wait=True)
)
step_payload_overwrite_filter = payload_step(
    "payload_overwrite_filter", lambda c, n: c.overwrite_payload(n, payload={"only": 1}, points=GROUP1, wait=True)
)
step_payload_delete_ids = payload_step(
    "payload_delete_ids", lambda c, n: c.delete_payload(n, keys=["a", "missing"], points=[1, 2, 5], wait=True)
)
step_payload_delete_filter = payload_step(
    "payload_delete_filter", lambda c, n: c.delete_payload(n, keys=["b", "obj"], points=GROUP1, wait=True)
)
step_payload_delete_nested = payload_step(
    "payload_delete_nested", lambda c, n: c.delete_payload(n, keys=["obj.p", "arr[].k"], points=[1, 2], wait=True)
)
step_payload_clear_ids = payload_step(
    "payload_clear_ids", lambda c, n: c.clear_payload(n, points_selector=M.PointIdsList(points=[3, 4]), wait=True)
)
step_payload_clear_filter = payload_step(
    "payload_clear_filter", lambda c, n: c.clear_payload(n, points_selector=M.FilterSelector(filter=GROUP1), wait=True)
)


def step_payload_then_filter(c):
    """Filters see payload updates at once."""
    rng = rng_for("payload")
    with fresh(c, "conf_payload_then_filter", 3, COS) as n:
        payload_collection(c, n, rng)
        c.set_payload(n, payload={"tag": "hot"}, points=[2, 5], wait=True)
        c.delete_payload(n, keys=["group"], points=[1], wait=True)
        hot = M.Filter(must=[M.FieldCondition(key="tag", match=M.MatchValue(value="hot"))])
        return {
            "hot": c.count(n, count_filter=hot, exact=True).count,
            "group1": scroll_ids(c, n, GROUP1),
            "query": hits(c.query_points(n, query=[1.0, 0.0, 0.5], query_filter=hot, limit=10).points),
        }


# ---------------------------------------------------------------------------------------------
# steps: scroll


def scroll_collection(c, n, rng):
    pts = [M.PointStruct(id=i, vector=vec(rng, 4), payload={"i": i, "odd": i % 2 == 1}) for i in range(1, 80, 2)]
    pts += [M.PointStruct(id=uid(rng), vector=vec(rng, 4), payload={"u": k, "odd": k % 2 == 1}) for k in range(13)]
    upsert(c, n, pts)


def step_scroll_paging(c):
    rng = rng_for("scroll")
    with fresh(c, "conf_scroll", 4, COS) as n:
        scroll_collection(c, n, rng)
        return {
            "limit10": scroll_pages(c, n, limit=10),
            "limit7_payload": scroll_pages(c, n, limit=7, with_payload=True),
            "one_page": scroll_pages(c, n, limit=1000),
            "exact_fit": scroll_pages(c, n, limit=53),
            "default_limit": ids_of(c.scroll(n)[0]),
            "next_of_default": c.scroll(n)[1],
        }


def step_scroll_filter(c):
    rng = rng_for("scroll")
    odd = M.Filter(must=[M.FieldCondition(key="odd", match=M.MatchValue(value=True))])
    with fresh(c, "conf_scroll_filter", 4, COS) as n:
        scroll_collection(c, n, rng)
        return {
            "odd": scroll_pages(c, n, flt=odd, limit=6),
            "nothing": scroll_pages(c, n, flt=M.Filter(must=[M.HasIdCondition(has_id=[1000])]), limit=6),
        }


def step_scroll_offset(c):
    rng = rng_for("scroll")
    with fresh(c, "conf_scroll_offset", 4, COS) as n:
        scroll_collection(c, n, rng)
        uids = sorted(r.id for r in c.scroll(n, limit=1000)[0] if isinstance(r.id, str))
        return {
            "from_existing": scroll_pages(c, n, limit=5, offset=21),
            "from_missing": scroll_pages(c, n, limit=5, offset=22),  # ids >= 22
            "from_zero": scroll_pages(c, n, limit=50, offset=0),
            "from_uuid": scroll_pages(c, n, limit=4, offset=uids[5]),
            "past_end": scroll_pages(c, n, limit=5, offset=10**6),
        }


def step_scroll_with_vectors(c):
    rng = rng_for("scroll")
    with fresh(c, "conf_scroll_vectors", 4, COS) as n:
        scroll_collection(c, n, rng)
        return {
            "vectors": scroll_pages(c, n, limit=20, with_vectors=True),
            "both": scroll_pages(c, n, limit=30, with_payload=True, with_vectors=True),
            "payload_keys": recs(c.scroll(n, limit=5, with_payload=["i"])[0]),
            "payload_exclude": recs(c.scroll(n, limit=5, with_payload=M.PayloadSelectorExclude(exclude=["i"]))[0]),
        }


def step_batch_update(c):
    rng = rng_for("batch_update")
    with fresh(c, "conf_batch_update", 4, COS) as n:
        group_collection(c, n, rng)
        in_group_2 = M.Filter(must=[M.FieldCondition(key="group", match=M.MatchValue(value=2))])
        ops = [
            M.UpsertOperation(upsert=M.PointsList(points=[
                M.PointStruct(id=100 + i, vector=vec(rng, 4), payload={"new": i}) for i in range(3)
            ])),
            M.UpsertOperation(upsert=M.PointsBatch(batch=M.Batch(
                ids=[200, 201], vectors=[vec(rng, 4), vec(rng, 4)], payloads=[{"b": 1}, {"b": 2}]))),
            M.DeleteOperation(delete=M.PointIdsList(points=[0, 1, 100])),
            M.DeleteOperation(delete=M.FilterSelector(filter=in_group_2)),
            M.SetPayloadOperation(set_payload=M.SetPayload(payload={"tag": "x"}, points=[3, 4, 101])),
            M.SetPayloadOperation(set_payload=M.SetPayload(payload={"deep": 1}, points=[12], key="inner")),
            M.OverwritePayloadOperation(overwrite_payload=M.SetPayload(payload={"only": True}, points=[6])),
            M.DeletePayloadOperation(delete_payload=M.DeletePayload(keys=["name"], points=[7, 9])),
            M.ClearPayloadOperation(clear_payload=M.PointIdsList(points=[10])),
        ]
        statuses = [status(r) for r in c.batch_update_points(n, update_operations=ops, wait=True)]
        after = recs(c.scroll(n, limit=100, with_payload=True, with_vectors=True)[0])
        wrong_size = [M.UpsertOperation(upsert=M.PointsList(points=[M.PointStruct(id=300, vector=[0.1, 0.2])]))]
        return {
            "statuses": statuses,
            "after": after,
            "wrong_size": expect_error(c, 400, lambda: c.batch_update_points(n, update_operations=wrong_size, wait=True)),
            "count_after_wrong_size": c.count(n, exact=True).count,
            "missing_collection": expect_error(c, 404, lambda: c.batch_update_points("conf_batch_missing", update_operations=ops[:1])),
        }


# ---------------------------------------------------------------------------------------------
# steps: query


def query_collection(c, n, rng, dim=8, count=100):
    pts = [
        M.PointStruct(id=i, vector=vec(rng, dim), payload={"g": i % 5, "x": i * 0.5, "s": f"s{i % 7}"})
        for i in range(count)
    ]
    pts += [M.PointStruct(id=uid(rng), vector=vec(rng, dim), payload={"g": 9, "x": -1.0}) for _ in range(5)]
    upsert(c, n, pts)
    return pts


def query_nearest(dist, tag):
    def step(c):
        rng = rng_for("query_" + tag)
        with fresh(c, "conf_query_" + tag, 8, dist) as n:
            query_collection(c, n, rng)
            qs = [vec(rng, 8) for _ in range(3)]
            return {
                "plain": [hits(c.query_points(n, query=q, limit=10, with_payload=False).points) for q in qs],
                "payload": hits(c.query_points(n, query=qs[0], limit=5, with_payload=True).points),
                "vectors": hits(c.query_points(n, query=qs[1], limit=5, with_vectors=True).points),
                "default_limit": hits(c.query_points(n, query=qs[2]).points),
                "nearest_query": hits(c.query_points(n, query=M.NearestQuery(nearest=qs[0]), limit=5).points),
                "limit_all": hits(c.query_points(n, query=qs[0], limit=500).points),
            }

    step.__name__ = "step_query_nearest_" + tag
    return step


step_query_nearest_cosine = query_nearest(COS, "cosine")
step_query_nearest_euclid = query_nearest(EUC, "euclid")
step_query_nearest_dot = query_nearest(DOT, "dot")
step_query_nearest_manhattan = query_nearest(MAN, "manhattan")


def step_query_by_id(c):
    rng = rng_for("query_by_id")
    with fresh(c, "conf_query_by_id", 8, COS) as n:
        pts = query_collection(c, n, rng)
        u = pts[-1].id
        return {
            # the point itself is not part of its own results
            "int": hits(c.query_points(n, query=17, limit=10).points),
            "uuid": hits(c.query_points(n, query=u, limit=10).points),
            "filtered": hits(c.query_points(
                n, query=3, query_filter=M.Filter(must=[M.FieldCondition(key="g", match=M.MatchValue(value=3))]), limit=10
            ).points),
        }


def step_query_filter(c):
    rng = rng_for("query_filter")
    with fresh(c, "conf_query_filter", 8, DOT) as n:
        query_collection(c, n, rng)
        q = vec(rng, 8)
        f1 = M.Filter(must=[M.FieldCondition(key="g", match=M.MatchValue(value=2))])
        f2 = M.Filter(must=[M.FieldCondition(key="x", range=M.Range(gte=10.0, lt=30.0))], must_not=[M.FieldCondition(key="s", match=M.MatchValue(value="s3"))])
        return {
            "g2": hits(c.query_points(n, query=q, query_filter=f1, limit=10, with_payload=True).points),
            "range": hits(c.query_points(n, query=q, query_filter=f2, limit=50).points),
            "none": hits(c.query_points(n, query=q, query_filter=M.Filter(must=[M.FieldCondition(key="g", match=M.MatchValue(value=77))])).points),
        }


def step_query_limit_offset(c):
    rng = rng_for("query_limit_offset")
    with fresh(c, "conf_query_offset", 8, EUC) as n:
        query_collection(c, n, rng)
        q = vec(rng, 8)
        f = M.Filter(must=[M.FieldCondition(key="g", match=M.MatchAny(any=[1, 2]))])
        return {
            "l5o0": hits(c.query_points(n, query=q, limit=5, offset=0).points),
            "l5o3": hits(c.query_points(n, query=q, limit=5, offset=3).points),
            "l1o7": hits(c.query_points(n, query=q, limit=1, offset=7).points),
            "filtered_offset": hits(c.query_points(n, query=q, limit=4, offset=10, query_filter=f).points),
            "past_end": hits(c.query_points(n, query=q, limit=10, offset=200).points),
            "tail": hits(c.query_points(n, query=q, limit=10, offset=100).points),
        }


def step_query_score_threshold(c):
    out = {}
    for dist, thr in ((COS, 0.3), (EUC, 1.9), (DOT, 0.8), (MAN, 4.5)):
        rng = rng_for("query_threshold_" + dist.value)
        with fresh(c, "conf_query_thr_" + dist.value.lower(), 8, dist) as n:
            query_collection(c, n, rng)
            q = vec(rng, 8)
            out[dist.value] = {
                "thr": hits(c.query_points(n, query=q, limit=100, score_threshold=thr).points),
                "thr_limit": hits(c.query_points(n, query=q, limit=3, score_threshold=thr).points),
                "thr_offset": hits(c.query_points(n, query=q, limit=5, offset=2, score_threshold=thr).points),
            }
    return out


def step_query_search_params(c):
    rng = rng_for("query_search_params")
    with fresh(c, "conf_query_params", 8, COS) as n:
        query_collection(c, n, rng)
        q = vec(rng, 8)
        return {
            "exact": hits(c.query_points(n, query=q, limit=10, search_params=M.SearchParams(hnsw_ef=128, exact=True)).points),
            "hnsw_ef": hits(c.query_points(n, query=q, limit=10, search_params=M.SearchParams(hnsw_ef=256)).points),
            "exact_false": hits(c.query_points(n, query=q, limit=10, search_params=M.SearchParams(exact=False)).points),
        }


def step_query_batch(c):
    rng = rng_for("query_batch")
    with fresh(c, "conf_query_batch", 8, DOT) as n:
        query_collection(c, n, rng)
        reqs = [
            M.QueryRequest(query=vec(rng, 8), limit=5),
            M.QueryRequest(query=vec(rng, 8), limit=3, offset=2, with_payload=True,
                           filter=M.Filter(must=[M.FieldCondition(key="g", match=M.MatchValue(value=4))])),
            M.QueryRequest(query=11, limit=4),
            M.QueryRequest(query=vec(rng, 8), limit=6, with_vector=True, score_threshold=0.5),
            M.QueryRequest(query=vec(rng, 8), limit=5, params=M.SearchParams(exact=True)),
        ]
        return [hits(r.points) for r in c.query_batch_points(n, requests=reqs)]


def recommend_step(strategy, tag):
    def step(c):
        rng = rng_for("recommend_" + tag)
        with fresh(c, "conf_recommend_" + tag, 8, COS) as n:
            pts = query_collection(c, n, rng)
            u = pts[-2].id
            R = lambda **kw: M.RecommendQuery(recommend=M.RecommendInput(strategy=strategy, **kw))  # noqa: E731
            g1 = M.Filter(must=[M.FieldCondition(key="g", match=M.MatchValue(value=1))])
            out = {
                "pos_ids": hits(c.query_points(n, query=R(positive=[1, 2, 3]), limit=8).points),
                "pos_neg": hits(c.query_points(n, query=R(positive=[4, u], negative=[5, 6]), limit=8).points),
                "pos_vector": hits(c.query_points(n, query=R(positive=[vec(rng, 8), 7]), limit=8).points),
                "neg_vector": hits(c.query_points(n, query=R(positive=[9], negative=[vec(rng, 8)]), limit=8).points),
                "filtered": hits(c.query_points(n, query=R(positive=[10, 11], negative=[12]), query_filter=g1, limit=8).points),
            }
            if strategy == M.RecommendStrategy.BEST_SCORE:
                # only negatives is allowed with best_score
                out["only_neg"] = hits(c.query_points(n, query=R(negative=[13, 14]), limit=8).points)
            return out

    step.__name__ = "step_recommend_" + tag
    return step


step_recommend_average = recommend_step(M.RecommendStrategy.AVERAGE_VECTOR, "average")
step_recommend_best_score = recommend_step(M.RecommendStrategy.BEST_SCORE, "best_score")


# The older `search` / `search_batch` / `recommend` methods are gone from the newest clients;
# Qdrant still serves their REST endpoints, so Grape is sent raw requests there, and local
# mode answers the same question with `query_points`.


def legacy_search(c, n, q, flt=None, limit=10, offset=None, thr=None, with_payload=False):
    if hasattr(c, "search"):
        return hits(c.search(n, query_vector=q, query_filter=flt, limit=limit, offset=offset,
                             score_threshold=thr, with_payload=with_payload))
    if is_local(c):
        return hits(c.query_points(n, query=q, query_filter=flt, limit=limit, offset=offset,
                                   score_threshold=thr, with_payload=with_payload).points)
    body = {"vector": q, "limit": limit, "with_payload": with_payload}
    if flt is not None:
        body["filter"] = jd(flt)
    if offset is not None:
        body["offset"] = offset
    if thr is not None:
        body["score_threshold"] = thr
    return [raw_hit(h) for h in raw_post(c, f"/collections/{n}/points/search", body)]


def step_legacy_search(c):
    rng = rng_for("legacy_search")
    with fresh(c, "conf_legacy_search", 8, COS) as n:
        query_collection(c, n, rng)
        q = vec(rng, 8)
        f = M.Filter(must=[M.FieldCondition(key="g", match=M.MatchValue(value=2))])
        return {
            "plain": legacy_search(c, n, q),
            "filtered": legacy_search(c, n, q, flt=f, limit=5, with_payload=True),
            "offset_thr": legacy_search(c, n, q, limit=5, offset=2, thr=0.1),
        }


def step_legacy_search_batch(c):
    rng = rng_for("legacy_search_batch")
    with fresh(c, "conf_legacy_search_batch", 8, EUC) as n:
        query_collection(c, n, rng)
        qs = [vec(rng, 8) for _ in range(3)]
        f = M.Filter(must=[M.FieldCondition(key="x", range=M.Range(lt=20.0))])
        if hasattr(c, "search_batch"):
            reqs = [M.SearchRequest(vector=qs[0], limit=4), M.SearchRequest(vector=qs[1], limit=3, filter=f),
                    M.SearchRequest(vector=qs[2], limit=2, offset=1)]
            return [hits(r) for r in c.search_batch(n, requests=reqs)]
        if is_local(c):
            return [
                legacy_search(c, n, qs[0], limit=4),
                legacy_search(c, n, qs[1], limit=3, flt=f),
                legacy_search(c, n, qs[2], limit=2, offset=1),
            ]
        body = {"searches": [
            {"vector": qs[0], "limit": 4},
            {"vector": qs[1], "limit": 3, "filter": jd(f)},
            {"vector": qs[2], "limit": 2, "offset": 1},
        ]}
        return [[raw_hit(h) for h in r] for r in raw_post(c, f"/collections/{n}/points/search/batch", body)]


def step_legacy_recommend(c):
    rng = rng_for("legacy_recommend")
    out = {}
    with fresh(c, "conf_legacy_recommend", 8, COS) as n:
        query_collection(c, n, rng)
        for strategy in (M.RecommendStrategy.AVERAGE_VECTOR, M.RecommendStrategy.BEST_SCORE):
            pos, neg = [1, 2], [3]
            if hasattr(c, "recommend"):
                r = hits(c.recommend(n, positive=pos, negative=neg, limit=6, strategy=strategy))
            elif is_local(c):
                r = hits(c.query_points(n, query=M.RecommendQuery(recommend=M.RecommendInput(
                    positive=pos, negative=neg, strategy=strategy)), limit=6).points)
            else:
                body = {"positive": pos, "negative": neg, "limit": 6, "strategy": strategy.value, "with_payload": True}
                r = [raw_hit(h) for h in raw_post(c, f"/collections/{n}/points/recommend", body)]
            out[strategy.value] = r
    return out


# ---------------------------------------------------------------------------------------------
# steps: grouped searches


def groups_of(result):
    return [
        {"id": g.id, "hits": hits(g.hits), "lookup": rec(g.lookup) if g.lookup is not None else None}
        for g in result.groups
    ]


def legacy_groups(c, n, kind, body, local):
    """The older `search/groups` or `recommend/groups`, which this client version dropped: sent
    to Grape directly (REST, or its gRPC stub with prefer_grpc); local mode answers the same
    through `query_points_groups(n, **local)`."""
    if is_local(c):
        return groups_of(c.query_points_groups(n, **local))
    if PREFER_GRPC:
        from qdrant_client import grpc as G
        from qdrant_client.conversions.conversion import GrpcToRest

        common = {"collection_name": n, "limit": body["limit"], "group_by": body["group_by"],
                  "group_size": body["group_size"], "with_payload": G.WithPayloadSelector(enable=True)}
        if kind == "search":
            answer = c._client.grpc_points.SearchGroups(G.SearchPointGroups(vector=body["vector"], **common), timeout=30)
        else:
            ids = lambda xs: [G.PointId(num=x) for x in xs]  # noqa: E731
            answer = c._client.grpc_points.RecommendGroups(
                G.RecommendPointGroups(positive=ids(body["positive"]), negative=ids(body["negative"]), **common), timeout=30)
        return groups_of(GrpcToRest.convert_groups_result(answer.result))
    return groups_of(M.GroupsResult(**raw_post(c, f"/collections/{n}/points/{kind}/groups", dict(body, with_payload=True))))


def step_groups(c):
    rng = rng_for("groups")
    with fresh(c, "conf_groups", 8, COS) as n, fresh(c, "conf_groups_docs", 4, COS) as docs:
        query_collection(c, n, rng)
        # arrays join each of their groups; a point with a value that is neither a string nor an
        # integer joins none
        odd = [["s1", "s2", "s1"], [3, "s4"], [True, "s5"], 2.5, [], "s6"]
        upsert(c, n, [M.PointStruct(id=600 + i, vector=vec(rng, 8), payload={"s": v, "g": 1}) for i, v in enumerate(odd)])
        upsert(c, docs, [M.PointStruct(id=i, vector=vec(rng, 4), payload={"title": f"doc {i}"}) for i in range(4)])
        q = vec(rng, 8)
        f = M.Filter(must=[M.FieldCondition(key="x", range=M.Range(lt=30.0))])

        def groups(**kw):
            return groups_of(c.query_points_groups(n, **kw))

        return {
            "query": groups(group_by="g", query=q, limit=3, group_size=2),
            "strings": groups(group_by="s", query=q, limit=20, group_size=3, with_payload=["s"]),
            "filtered": groups(group_by="s", query=q, query_filter=f, limit=4, group_size=5, with_payload=False),
            "by_id": groups(group_by="g", query=17, limit=2, group_size=3),
            "threshold": groups(group_by="g", query=q, score_threshold=0.2, limit=10, group_size=2),
            "vectors": groups(group_by="g", query=q, limit=2, group_size=1, with_vectors=True),
            "lookup": groups(group_by="g", query=q, limit=6, group_size=1, with_lookup=docs),
            "lookup_object": groups(group_by="g", query=q, limit=6, group_size=1,
                                    with_lookup=M.WithLookup(collection=docs, with_payload=False, with_vectors=True)),
            "recommend": groups(group_by="s", query=M.RecommendQuery(recommend=M.RecommendInput(positive=[1, 2], negative=[3])),
                                limit=3, group_size=2),
            "search": legacy_groups(c, n, "search", {"vector": q, "group_by": "g", "limit": 3, "group_size": 2},
                                    dict(query=q, group_by="g", limit=3, group_size=2)),
            "legacy_recommend": legacy_groups(
                c, n, "recommend", {"positive": [1, 2], "negative": [3], "group_by": "s", "limit": 3, "group_size": 2},
                dict(query=M.RecommendQuery(recommend=M.RecommendInput(positive=[1, 2], negative=[3])), group_by="s",
                     limit=3, group_size=2)),
            "missing_collection": expect_error(c, 404, lambda: c.query_points_groups("conf_groups_missing", group_by="g", query=q)),
        }


# ---------------------------------------------------------------------------------------------
# steps: filters. Every filter step builds the same 150-point collection and runs the filter in
# query_points, count and scroll.

WORDS = ["quick", "brown", "fox", "jumps", "over", "lazy", "dog", "cat", "foxes", "Quick"]
CITIES = ["Berlin", "London", "Moscow", "Paris", "berlin"]
TAGS = ["red", "green", "blue", "black"]
BASE_TS = datetime(2024, 1, 1, tzinfo=timezone.utc)
OFFSETS = [timezone.utc, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]


def rfc3339(rng):
    t = BASE_TS + timedelta(seconds=rng.randint(0, 365 * 86400))
    t = t.astimezone(rng.choice(OFFSETS))
    s = t.strftime("%Y-%m-%dT%H:%M:%S")
    if rng.random() < 0.3:
        s += ".%03d" % rng.randint(0, 999)
    off = t.utcoffset()
    if off == timedelta(0):
        return s + "Z"
    mins = int(off.total_seconds() // 60)
    sign = "+" if mins >= 0 else "-"
    return s + "%s%02d:%02d" % (sign, abs(mins) // 60, abs(mins) % 60)


def geo(rng):
    return {"lat": round(rng.uniform(50.0, 55.0), 5), "lon": round(rng.uniform(10.0, 15.0), 5)}


MAYBE = [None, [], [None], [1, None], 5, "x", [0], [[]], "MISSING"]


def filter_points():
    rng = rng_for("filter_dataset")
    pts = []
    for i in range(150):
        p = {
            "city": rng.choice(CITIES),
            "count": rng.randint(0, 20),
            "price": round(rng.uniform(0, 100), 2),
            "flag": rng.random() < 0.5,
            "tags": rng.sample(TAGS, rng.randint(0, 3)),
            "nums": [rng.randint(0, 6) for _ in range(rng.randint(0, 3))],
            "desc": " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 5))) + rng.choice(["", ".", "!", ", yes"]),
            "ts": rfc3339(rng),
            "arr": [{"b": rng.randint(0, 5), "c": rng.choice(TAGS)} for _ in range(rng.randint(0, 3))],
            "mixed": rng.choice([rng.randint(0, 30), str(rng.randint(0, 30)), rng.uniform(0, 30)]),
        }
        r = rng.random()
        if r < 0.6:
            p["a"] = {"b": rng.randint(0, 5)}
        elif r < 0.75:
            p["a"] = {"b": [rng.randint(0, 5) for _ in range(2)]}
        elif r < 0.85:
            p["a"] = [{"b": rng.randint(0, 5)}, {"b": rng.randint(0, 5)}]
        r = rng.random()
        if r < 0.7:
            p["loc"] = geo(rng)
        elif r < 0.85:
            p["loc"] = [geo(rng), geo(rng)]
        m = rng.choice(MAYBE)
        if m != "MISSING":
            p["maybe"] = m
        if i % 10 == 0:
            p["count"] = float(p["count"])  # a float payload value never matches an integer MatchValue
        if i % 13 == 0:
            p["flag"] = None
        pid = uid(rng) if i % 9 == 4 else i
        pts.append(M.PointStruct(id=pid, vector=vec(rng, 6), payload=p))
    return pts


# Payload indexes on every key the filters use: conditions on indexed keys run on their typed
# columns in Grape, and must answer exactly as without them (local mode ignores indexes).
FILTER_INDEXES = [
    ("city", M.PayloadSchemaType.KEYWORD), ("count", M.PayloadSchemaType.INTEGER), ("flag", M.PayloadSchemaType.BOOL),
    ("price", M.PayloadSchemaType.FLOAT), ("ts", M.PayloadSchemaType.DATETIME), ("tags", M.PayloadSchemaType.KEYWORD),
    ("nums", M.PayloadSchemaType.INTEGER), ("mixed", M.PayloadSchemaType.FLOAT), ("maybe", M.PayloadSchemaType.INTEGER),
    ("a.b", M.PayloadSchemaType.INTEGER), ("arr[].b", M.PayloadSchemaType.INTEGER), ("arr[].c", M.PayloadSchemaType.KEYWORD),
    ("desc", M.PayloadSchemaType.TEXT), ("loc", M.PayloadSchemaType.GEO),
]


def filter_step(name, make_filter, indexed=False):
    def step(c):
        with fresh(c, "conf_f_" + name + ("_ix" if indexed else ""), 6, COS) as n:
            pts = filter_points()
            # Half the indexes exist when the points arrive, half are made afterwards: both
            # the columns computed at load and those computed by the first filter are tested.
            half = len(FILTER_INDEXES) // 2
            for key, kind in (FILTER_INDEXES[:half] if indexed else []):
                c.create_payload_index(n, field_name=key, field_schema=kind, wait=True)
            upsert(c, n, pts)
            for key, kind in (FILTER_INDEXES[half:] if indexed else []):
                c.create_payload_index(n, field_name=key, field_schema=kind, wait=True)
            flt = make_filter(pts)
            q = vec(rng_for("filter_query"), 6)
            return {
                "count": c.count(n, count_filter=flt, exact=True).count,
                "scroll": scroll_ids(c, n, flt),
                "query": hits(c.query_points(n, query=q, query_filter=flt, limit=15, with_payload=False).points),
            }

    step.__name__ = "step_filter_" + name + ("_indexed" if indexed else "")
    return step


def FC(key, **kw):
    return M.FieldCondition(key=key, **kw)


def MV(key, v):
    return FC(key, match=M.MatchValue(value=v))


FILTERS = {
    "must": lambda p: M.Filter(must=[MV("city", "London"), FC("count", range=M.Range(gte=5))]),
    "should": lambda p: M.Filter(should=[MV("city", "Paris"), MV("flag", True)]),
    "must_not": lambda p: M.Filter(must_not=[MV("city", "Berlin"), MV("tags", "red")]),
    "min_should": lambda p: M.Filter(min_should=M.MinShould(
        conditions=[MV("city", "London"), MV("flag", True), FC("count", range=M.Range(gt=10)), MV("tags", "blue")],
        min_count=2)),
    "must_should_combined": lambda p: M.Filter(must=[MV("flag", False)], should=[MV("city", "Moscow"), MV("city", "Paris")],
                                                 must_not=[FC("price", range=M.Range(gt=80))]),
    "nested_clauses": lambda p: M.Filter(
        should=[M.Filter(must=[MV("city", "London"), MV("flag", True)]), M.Filter(must_not=[FC("count", range=M.Range(lt=18))])],
        must_not=[M.Filter(should=[MV("tags", "green")])]),
    "empty_filter": lambda p: M.Filter(),
    "empty_should": lambda p: M.Filter(should=[], must=[MV("flag", True)]),
    "match_value_str": lambda p: M.Filter(must=[MV("city", "berlin")]),
    "match_value_int": lambda p: M.Filter(must=[MV("count", 7)]),
    "match_value_bool": lambda p: M.Filter(must=[MV("flag", False)]),
    "match_value_array": lambda p: M.Filter(must=[MV("tags", "red")]),
    "match_value_missing_key": lambda p: M.Filter(must=[MV("nope", "x")]),
    "must_not_missing_key": lambda p: M.Filter(must_not=[MV("nope", "x")]),
    "match_any_str": lambda p: M.Filter(must=[FC("city", match=M.MatchAny(any=["London", "Paris"]))]),
    "match_any_int": lambda p: M.Filter(must=[FC("count", match=M.MatchAny(any=[1, 2, 3, 10]))]),
    "match_any_array": lambda p: M.Filter(must=[FC("tags", match=M.MatchAny(any=["red", "blue"]))]),
    "match_except_str": lambda p: M.Filter(must=[FC("city", match=M.MatchExcept(**{"except": ["London", "Paris"]}))]),
    "match_except_int": lambda p: M.Filter(must=[FC("count", match=M.MatchExcept(**{"except": [0, 1, 2, 3, 4, 5]}))]),
    "match_except_array": lambda p: M.Filter(must=[FC("tags", match=M.MatchExcept(**{"except": ["red", "green"]}))]),
    "match_except_missing": lambda p: M.Filter(must=[FC("maybe", match=M.MatchExcept(**{"except": [5]}))]),
    "match_text_simple": lambda p: M.Filter(must=[FC("desc", match=M.MatchText(text="jumps"))]),
    "match_text": lambda p: M.Filter(must=[FC("desc", match=M.MatchText(text="quick fox"))]),
    "range_int": lambda p: M.Filter(must=[FC("count", range=M.Range(gt=5, lt=12))]),
    "range_int_inclusive": lambda p: M.Filter(must=[FC("count", range=M.Range(gte=5, lte=12))]),
    "range_float": lambda p: M.Filter(must=[FC("price", range=M.Range(gte=20.5, lt=60.25))]),
    "range_float_on_int": lambda p: M.Filter(must=[FC("count", range=M.Range(gt=4.5, lte=9.0))]),
    "range_array": lambda p: M.Filter(must=[FC("nums", range=M.Range(gt=4))]),
    "range_mixed_types": lambda p: M.Filter(must=[FC("mixed", range=M.Range(gte=10))]),
    "range_on_strings": lambda p: M.Filter(must=[FC("city", range=M.Range(gte=0))]),
    "datetime_range": lambda p: M.Filter(must=[FC("ts", range=M.DatetimeRange(
        gte=datetime(2024, 3, 1, tzinfo=timezone.utc), lt=datetime(2024, 9, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))))]),
    "datetime_range_str": lambda p: M.Filter(must=[FC("ts", range=M.DatetimeRange(gt="2024-06-01T00:00:00Z", lte="2024-06-30T23:59:59Z"))]),
    "values_count": lambda p: M.Filter(must=[FC("tags", values_count=M.ValuesCount(gte=2))]),
    "values_count_range": lambda p: M.Filter(must=[FC("nums", values_count=M.ValuesCount(gt=0, lt=2))]),
    "values_count_zero": lambda p: M.Filter(must=[FC("maybe", values_count=M.ValuesCount(lt=1))]),
    "is_empty": lambda p: M.Filter(must=[M.IsEmptyCondition(is_empty=M.PayloadField(key="maybe"))]),
    "is_empty_not": lambda p: M.Filter(must_not=[M.IsEmptyCondition(is_empty=M.PayloadField(key="tags"))]),
    "is_null": lambda p: M.Filter(must=[M.IsNullCondition(is_null=M.PayloadField(key="maybe"))]),
    "is_null_flag": lambda p: M.Filter(must=[M.IsNullCondition(is_null=M.PayloadField(key="flag"))]),
    "has_id": lambda p: M.Filter(must=[M.HasIdCondition(has_id=[3, 5, p[4].id, p[13].id, 99999, "5d6b0e7d-1d4b-4e9a-8b35-6a0a29f5b2c1"])]),
    "has_id_must_not": lambda p: M.Filter(must_not=[M.HasIdCondition(has_id=list(range(0, 150, 2)))]),
    "nested_key_dot": lambda p: M.Filter(must=[MV("a.b", 3)]),
    "nested_key_dot_range": lambda p: M.Filter(must=[FC("a.b", range=M.Range(gte=4))]),
    "nested_key_array": lambda p: M.Filter(must=[MV("arr[].b", 3)]),
    "nested_key_array_two": lambda p: M.Filter(must=[MV("arr[].b", 1), MV("arr[].c", "red")]),
    "geo_bounding_box": lambda p: M.Filter(must=[FC("loc", geo_bounding_box=M.GeoBoundingBox(
        top_left=M.GeoPoint(lat=54.0, lon=11.0), bottom_right=M.GeoPoint(lat=52.0, lon=14.0)))]),
    "geo_radius": lambda p: M.Filter(must=[FC("loc", geo_radius=M.GeoRadius(
        center=M.GeoPoint(lat=52.52, lon=13.405), radius=150_000.0))]),
    "geo_polygon": lambda p: M.Filter(must=[FC("loc", geo_polygon=M.GeoPolygon(
        exterior=M.GeoLineString(points=[M.GeoPoint(lat=51.0, lon=11.0), M.GeoPoint(lat=51.0, lon=14.0),
                                         M.GeoPoint(lat=54.0, lon=14.0), M.GeoPoint(lat=54.0, lon=11.0),
                                         M.GeoPoint(lat=51.0, lon=11.0)]),
        interiors=[M.GeoLineString(points=[M.GeoPoint(lat=52.0, lon=12.0), M.GeoPoint(lat=52.0, lon=13.0),
                                           M.GeoPoint(lat=53.0, lon=13.0), M.GeoPoint(lat=53.0, lon=12.0),
                                           M.GeoPoint(lat=52.0, lon=12.0)])]))]),
}

for _name, _make in FILTERS.items():
    globals()["step_filter_" + _name] = filter_step(_name, _make)
    globals()["step_filter_" + _name + "_indexed"] = filter_step(_name, _make, indexed=True)


# ---------------------------------------------------------------------------------------------
# step: a 10,000-point collection


def step_big_10k(c):
    rng = rng_for("big_10k")
    dim = 32
    with fresh(c, "conf_big_10k", dim, COS) as n:
        statuses = []
        for b in range(10):
            pts = [
                M.PointStruct(id=i, vector=vec(rng, dim), payload={"group": i % 10, "x": i / 10000.0, "rare": i % 997})
                for i in range(b * 1000, (b + 1) * 1000)
            ]
            statuses.append(upsert(c, n, pts))
        exact = M.SearchParams(exact=True)
        qs = [vec(rng, dim) for _ in range(20)]
        out = {
            "upserts": statuses,
            "count": c.count(n, exact=True).count,
            "points_count": c.get_collection(n).points_count,
            "queries": [hits(c.query_points(n, query=q, limit=10, search_params=exact).points) for q in qs],
        }
        g3 = M.Filter(must=[MV("group", 3)])
        rg = M.Filter(must=[FC("x", range=M.Range(gte=0.25, lt=0.3))])
        both = M.Filter(must=[FC("group", match=M.MatchAny(any=[1, 2])), FC("x", range=M.Range(lt=0.5))])
        out["filtered"] = [
            hits(c.query_points(n, query=qs[i], query_filter=f, limit=10, search_params=exact, with_payload=True).points)
            for i, f in enumerate((g3, rg, both))
        ]
        out["filtered_counts"] = [c.count(n, count_filter=f, exact=True).count for f in (g3, rg, both)]
        out["by_id"] = hits(c.query_points(n, query=1234, limit=10, search_params=exact).points)
        # groups of about 10 points each: the best 3 groups fill only when far more candidates
        # than 3 × 5 have been looked at
        out["groups"] = groups_of(c.query_points_groups(n, query=qs[1], group_by="rare", limit=3, group_size=5,
                                                        search_params=exact, with_payload=False))
        # … and by a point's id, whose point is left out of the up to 10,000 candidates
        out["groups_by_id"] = groups_of(c.query_points_groups(n, query=1234, group_by="rare", limit=3, group_size=5,
                                                              search_params=exact, with_payload=False))
        return out


# ---------------------------------------------------------------------------------------------
# steps: bad input (the HTTP status Grape must answer is written in each call)


def step_bad_vector_size_upsert(c):
    with fresh(c, "conf_bad_dim_upsert", 4, COS) as n:
        upsert(c, n, [M.PointStruct(id=1, vector=[0.1, 0.2, 0.3, 0.4])])
        return {
            "short": expect_error(c, 400, lambda: upsert(c, n, [M.PointStruct(id=2, vector=[0.1, 0.2, 0.3])])),
            "long": expect_error(c, 400, lambda: upsert(c, n, [M.PointStruct(id=3, vector=[0.1] * 5)])),
            "batch": expect_error(c, 400, lambda: c.upsert(n, points=M.Batch(ids=[4, 5], vectors=[[0.1] * 4, [0.1] * 2]), wait=True)),
            "count_after": c.count(n, exact=True).count,
        }


def step_bad_vector_size_query(c):
    with fresh(c, "conf_bad_dim_query", 4, COS) as n:
        upsert(c, n, [M.PointStruct(id=1, vector=[0.1, 0.2, 0.3, 0.4])])
        return {
            "short": expect_error(c, 400, lambda: c.query_points(n, query=[0.1, 0.2, 0.3])),
            "long": expect_error(c, 400, lambda: c.query_points(n, query=[0.1] * 9)),
            "batch": expect_error(c, 400, lambda: c.query_batch_points(n, requests=[M.QueryRequest(query=[0.1] * 3)])),
        }


def step_bad_unknown_collection(c):
    n = "conf_no_such_collection"
    drop(c, n)
    v = [0.1, 0.2, 0.3]
    return {
        "exists": c.collection_exists(n),
        "get": expect_error(c, 404, lambda: c.get_collection(n)),
        "upsert": expect_error(c, 404, lambda: upsert(c, n, [M.PointStruct(id=1, vector=v)])),
        "query": expect_error(c, 404, lambda: c.query_points(n, query=v)),
        "scroll": expect_error(c, 404, lambda: c.scroll(n)),
        "count": expect_error(c, 404, lambda: c.count(n)),
        "retrieve": expect_error(c, 404, lambda: c.retrieve(n, [1])),
        "delete_points": expect_error(c, 404, lambda: c.delete(n, points_selector=[1], wait=True)),
        "set_payload": expect_error(c, 404, lambda: c.set_payload(n, payload={"a": 1}, points=[1], wait=True)),
    }


def step_bad_create_existing(c):
    with fresh(c, "conf_bad_exists", 4, COS) as n:
        return {
            "again": expect_error(c, 409, lambda: c.create_collection(n, vectors_config=M.VectorParams(size=4, distance=COS))),
            "still_there": c.collection_exists(n),
        }


def step_bad_malformed_filter(c):
    """A range bound that is a string; built unvalidated so the client sends it as is."""
    if PREFER_GRPC:
        raise SkipStep("REST only: a malformed filter cannot be expressed in protobuf")
    with fresh(c, "conf_bad_filter", 3, COS) as n:
        upsert(c, n, [M.PointStruct(id=i, vector=[0.1, 0.2, float(i)], payload={"x": i}) for i in range(3)])
        bad = M.Filter.model_construct(must=[
            M.FieldCondition.model_construct(key="x", range=M.Range.model_construct(gt="abc"))
        ])
        return {
            "count": expect_error(c, 400, lambda: c.count(n, count_filter=bad, exact=True)),
            "scroll": expect_error(c, 400, lambda: c.scroll(n, scroll_filter=bad)),
            "query": expect_error(c, 400, lambda: c.query_points(n, query=[0.1, 0.2, 0.3], query_filter=bad)),
        }


def step_bad_missing_point(c):
    with fresh(c, "conf_bad_missing_point", 3, COS) as n:
        upsert(c, n, [M.PointStruct(id=1, vector=[0.1, 0.2, 0.3])])
        return {
            "query_by_missing_id": expect_error(c, 404, lambda: c.query_points(n, query=777)),
            "recommend_missing_id": expect_error(c, 404, lambda: c.query_points(
                n, query=M.RecommendQuery(recommend=M.RecommendInput(positive=[777])))),
            "set_payload_missing_id": expect_error(c, 404, lambda: c.set_payload(n, payload={"a": 1}, points=[777], wait=True)),
            "overwrite_missing_id": expect_error(c, 404, lambda: c.overwrite_payload(n, payload={"a": 1}, points=[777], wait=True)),
            # deleting missing ids is not an error
            "delete_missing_id": status(c.delete(n, points_selector=[777], wait=True)),
            "count": c.count(n, exact=True).count,
        }


def step_bad_limit_zero(c):
    """Validation errors (as opposed to parse errors) are 422 in Qdrant."""
    with fresh(c, "conf_bad_limit", 3, COS) as n:
        upsert(c, n, [M.PointStruct(id=1, vector=[0.1, 0.2, 0.3])])
        return {"query": expect_error(c, 422, lambda: c.query_points(n, query=[0.1, 0.2, 0.3], limit=0))}


def step_bad_point_ids(c):
    """Ids the server rejects while parsing (400); local mode is laxer for some of them."""
    with fresh(c, "conf_bad_ids", 3, COS) as n:
        v = [0.1, 0.2, 0.3]
        return {
            "not_uuid": expect_error(c, 400, lambda: upsert(c, n, [M.PointStruct(id="not-a-uuid", vector=v)])),
            "negative": expect_error(c, 400, lambda: upsert(c, n, [M.PointStruct(id=-1, vector=v)]),
                                     local_may_accept=True, grpc_client_side_ok=True),
            "too_big": expect_error(c, 400, lambda: upsert(c, n, [M.PointStruct(id=2**64, vector=v)]),
                                    local_may_accept=True, grpc_client_side_ok=True),
            "count": c.count(n, exact=True).count,
        }


# ---------------------------------------------------------------------------------------------
# runner


# ---------------------------------------------------------------------------------------------
# steps: aliases, payload indexes, facets, order_by


def step_query_prefetch(c):
    rng = rng_for("query_prefetch")
    with fresh(c, "conf_query_prefetch", 8, COS) as n:
        query_collection(c, n, rng)
        q1, q2, q3 = vec(rng, 8), vec(rng, 8), vec(rng, 8)
        g2 = M.Filter(must=[M.FieldCondition(key="g", match=M.MatchValue(value=2))])
        two = [M.Prefetch(query=q1, limit=15), M.Prefetch(query=q2, filter=g2, limit=10)]

        def ask(**kw):
            return hits(c.query_points(n, **kw).points)

        out = {
            "rrf": ask(prefetch=two, query=M.FusionQuery(fusion=M.Fusion.RRF), limit=8),
            "dbsf": ask(prefetch=two, query=M.FusionQuery(fusion=M.Fusion.DBSF), limit=8, with_payload=True),
            "rerank": ask(prefetch=M.Prefetch(query=q1, limit=20), query=q3, limit=5),
            "rerank_filtered": ask(prefetch=two, query=q3, query_filter=M.Filter(must_not=[M.FieldCondition(key="g", match=M.MatchValue(value=0))]), limit=6),
            "nested": ask(prefetch=M.Prefetch(prefetch=two, query=M.FusionQuery(fusion=M.Fusion.RRF), limit=12), query=q3, limit=4),
            "offset": ask(prefetch=two, query=M.FusionQuery(fusion=M.Fusion.RRF), limit=4, offset=3),
        }
        if hasattr(M, "RrfQuery"):
            out["rrf_k_weights"] = ask(prefetch=two, query=M.RrfQuery(rrf=M.Rrf(k=5, weights=[1.0, 3.0])), limit=8)
        return out


NAMED = {"image": (4, COS), "text": (6, DOT)}


def named_points(rng, ids):
    return [M.PointStruct(id=i, vector={"image": vec(rng, 4), "text": vec(rng, 6)}, payload={"g": i % 3}) for i in ids]


def step_named_vectors(c):
    """Named vectors: create, upsert (list and batch forms), retrieve, query per vector by
    vector, by id and by recommendation, prefetches over both fused, payload edits."""
    rng = rng_for("named_vectors")
    with fresh(c, "conf_named", named=NAMED) as n:
        out = {"info_empty": collection_info(c, n)}
        upsert(c, n, named_points(rng, range(30)))
        ids = list(range(30, 40))
        batch = M.Batch(ids=ids, vectors={"image": [vec(rng, 4) for _ in ids], "text": [vec(rng, 6) for _ in ids]})
        out["batch"] = status(c.upsert(n, points=batch, wait=True))
        out["info"] = collection_info(c, n)
        out["retrieve"] = recs(c.retrieve(n, ids=[1, 2, 35], with_vectors=True), sort=True)
        out["retrieve_text"] = recs(c.retrieve(n, ids=[3], with_vectors=["text"]))
        out["scroll_image"] = recs(c.scroll(n, limit=3, with_vectors=["image"])[0])
        qi, qt = vec(rng, 4), vec(rng, 6)

        def ask(**kw):
            return hits(c.query_points(n, **kw).points)

        out["image"] = ask(query=qi, using="image", limit=5)
        out["text"] = ask(query=qt, using="text", limit=5, with_payload=True)
        out["text_vectors"] = ask(query=qt, using="text", limit=2, with_vectors=True)
        out["image_only"] = ask(query=qt, using="text", limit=2, with_vectors=["image"])
        out["by_id"] = ask(query=7, using="text", limit=4)
        out["recommend"] = ask(query=M.RecommendQuery(recommend=M.RecommendInput(positive=[1, 2], negative=[3])), using="image", limit=4)
        two = [M.Prefetch(query=qi, using="image", limit=15), M.Prefetch(query=qt, using="text", limit=15)]
        out["rrf"] = ask(prefetch=two, query=M.FusionQuery(fusion=M.Fusion.RRF), limit=6)
        out["dbsf"] = ask(prefetch=two, query=M.FusionQuery(fusion=M.Fusion.DBSF), limit=6)
        out["rerank"] = ask(prefetch=two, query=qt, using="text", limit=4)
        out["filtered"] = ask(query=qi, using="image", query_filter=M.Filter(must=[M.FieldCondition(key="g", match=M.MatchValue(value=1))]), limit=4)
        c.set_payload(n, payload={"tag": "x"}, points=[1, 2], wait=True)
        out["edited"] = recs(c.retrieve(n, ids=[1, 2], with_vectors=True, with_payload=True), sort=True)
        out["count"] = c.count(n).count
        return out


def step_bad_named_vectors(c):
    rng = rng_for("bad_named_vectors")
    with fresh(c, "conf_bad_named", named=NAMED) as n:
        upsert(c, n, named_points(rng, range(5)))
        return {
            "unknown_using": expect_error(c, 400, lambda: c.query_points(n, query=vec(rng, 4), using="nope")),
            "no_using": expect_error(c, 400, lambda: c.query_points(n, query=vec(rng, 4)), local_may_accept=True),
            "unknown_name": expect_error(c, 400, lambda: upsert(c, n, [M.PointStruct(id=9, vector={"image": vec(rng, 4), "text": vec(rng, 6), "nope": [1.0]})])),
            "wrong_dim": expect_error(c, 400, lambda: upsert(c, n, [M.PointStruct(id=9, vector={"image": vec(rng, 4), "text": vec(rng, 5)})])),
            "missing_text": expect_error(c, 400, lambda: upsert(c, n, [M.PointStruct(id=9, vector={"image": vec(rng, 4)})]), local_may_accept=True),
            "count": c.count(n).count,
        }


def step_collection_name_chars(c):
    rng = rng_for("collection_name_chars")
    with fresh(c, "conf_my-docs.v2", 4, EUC) as n:
        upsert(c, n, [M.PointStruct(id=i, vector=vec(rng, 4), payload={"i": i}) for i in range(5)])
        return {"count": c.count(n).count, "hits": hits(c.query_points(n, query=vec(rng, 4), limit=3).points),
                "listed": n in [x.name for x in c.get_collections().collections]}


def step_aliases(c):
    rng = rng_for("aliases")
    with fresh(c, "conf_alias_a", 8, COS) as a, fresh(c, "conf_alias_b", 8, COS) as b:
        upsert(c, a, [M.PointStruct(id=1, vector=vec(rng, 8), payload={"in": "a"})])
        upsert(c, b, [M.PointStruct(id=2, vector=vec(rng, 8), payload={"in": "b"})])
        out = {}
        c.update_collection_aliases(change_aliases_operations=[
            M.CreateAliasOperation(create_alias=M.CreateAlias(collection_name=a, alias_name="conf_live"))])
        out["listed"] = sorted((x.alias_name, x.collection_name) for x in c.get_aliases().aliases if x.alias_name.startswith("conf_"))
        out["of_a"] = [x.alias_name for x in c.get_collection_aliases(a).aliases]
        out["via_alias"] = ids_of(c.scroll("conf_live", limit=10)[0])
        out["count_via_alias"] = c.count("conf_live").count
        # switch the alias to the other collection in one call
        c.update_collection_aliases(change_aliases_operations=[
            M.DeleteAliasOperation(delete_alias=M.DeleteAlias(alias_name="conf_live")),
            M.CreateAliasOperation(create_alias=M.CreateAlias(collection_name=b, alias_name="conf_live"))])
        out["switched"] = ids_of(c.scroll("conf_live", limit=10)[0])
        c.update_collection_aliases(change_aliases_operations=[
            M.RenameAliasOperation(rename_alias=M.RenameAlias(old_alias_name="conf_live", new_alias_name="conf_live2"))])
        out["renamed"] = ids_of(c.query_points("conf_live2", query=vec(rng, 8), limit=3).points)
        c.update_collection_aliases(change_aliases_operations=[
            M.DeleteAliasOperation(delete_alias=M.DeleteAlias(alias_name="conf_live2"))])
        out["after_delete"] = sorted(x.alias_name for x in c.get_aliases().aliases if x.alias_name.startswith("conf_"))
        return out


def step_payload_index(c):
    rng = rng_for("payload_index")
    with fresh(c, "conf_payload_index", 8, DOT) as n:
        query_collection(c, n, rng)
        out = {
            "keyword": status(c.create_payload_index(n, field_name="s", field_schema=M.PayloadSchemaType.KEYWORD, wait=True)),
            "integer": status(c.create_payload_index(n, field_name="g", field_schema=M.PayloadSchemaType.INTEGER, wait=True)),
        }
        flt = M.Filter(must=[M.FieldCondition(key="s", match=M.MatchValue(value="s3"))])
        out["count"] = c.count(n, count_filter=flt).count
        out["query"] = hits(c.query_points(n, query=vec(rng, 8), query_filter=flt, limit=5).points)
        out["delete"] = status(c.delete_payload_index(n, field_name="s", wait=True))
        if not is_local(c):  # local mode keeps no payload schema
            schema = c.get_collection(n).payload_schema
            assert set(schema) == {"g"} and schema["g"].points == 105, schema
        return out


def step_facet(c):
    rng = rng_for("facet")
    with fresh(c, "conf_facet", 8, COS) as n:
        query_collection(c, n, rng)
        upsert(c, n, [M.PointStruct(id=500 + i, vector=vec(rng, 8), payload={"tags": ["x", "y", "x"][: i + 1]}) for i in range(3)])

        def facet(**kw):
            return [(h.value, h.count) for h in c.facet(n, **kw).hits]

        return {
            "s": facet(key="s"),
            "g_limit": facet(key="g", limit=3),
            "filtered": facet(key="s", facet_filter=M.Filter(must=[M.FieldCondition(key="g", range=M.Range(gte=3))])),
            "array": facet(key="tags"),
        }


def step_scroll_order_by(c):
    rng = rng_for("scroll_order_by")
    with fresh(c, "conf_scroll_order_by", 8, COS) as n:
        pts = [M.PointStruct(id=i, vector=vec(rng, 8), payload={"x": (i * 37) % 101 + 0.5, "t": f"2024-01-{1 + i % 28:02d}T00:00:00Z"}) for i in range(60)]
        upsert(c, n, pts)

        def page(order_by, **kw):
            points, nxt = c.scroll(n, limit=kw.pop("limit", 8), order_by=order_by, **kw)
            return {"ids": ids_of(points), "next": nxt}

        return {
            "asc": page("x"),
            "desc": page(M.OrderBy(key="x", direction=M.Direction.DESC)),
            "start_from": page(M.OrderBy(key="x", start_from=50)),
            "filtered": page(M.OrderBy(key="x", direction=M.Direction.DESC),
                             scroll_filter=M.Filter(must=[M.FieldCondition(key="x", range=M.Range(lt=40))])),
        }



def all_steps():
    steps = []
    for name, fn in globals().items():
        if name.startswith("step_") and callable(fn):
            steps.append((name[len("step_"):], fn))
    return steps  # definition order


def run_side(fn, c):
    try:
        return "ok", fn(c)
    except SkipStep as e:
        return "skip", str(e)
    except Exception as e:  # noqa: BLE001
        return "exception", f"{type(e).__name__}: {str(e)[:400]}", traceback.format_exc()


def main():
    global PREFER_GRPC, VERBOSE
    ap = argparse.ArgumentParser(description="Qdrant client conformance: Grape vs qdrant-client local mode")
    ap.add_argument("--url", help="Grape's Qdrant REST URL, e.g. http://127.0.0.1:6333")
    ap.add_argument("--grpc-port", type=int, default=None)
    ap.add_argument("--prefer-grpc", action="store_true")
    ap.add_argument("--only", action="append", default=[], help="step name or glob (repeatable, comma-separated)")
    ap.add_argument("--list", action="store_true", help="list the steps and exit")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--dump", metavar="FILE", help="write both sides' results as JSON to FILE")
    ap.add_argument("--self-test", nargs="?", const="memory", choices=["memory", "path"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    VERBOSE = args.verbose
    PREFER_GRPC = args.prefer_grpc

    steps = all_steps()
    if args.list:
        for name, _ in steps:
            print(name)
        return 0
    patterns = [p for o in args.only for p in o.split(",") if p]
    if patterns:
        steps = [(n, f) for n, f in steps if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
        if not steps:
            print(f"no step matches {patterns}", file=sys.stderr)
            return 2

    tmpdir = None
    if args.self_test:
        if args.self_test == "path":
            tmpdir = tempfile.mkdtemp(prefix="grape-qdrant-conf-")
            grape = QdrantClient(path=tmpdir)
        else:
            grape = QdrantClient(":memory:")
        PREFER_GRPC = False
    else:
        if not args.url:
            ap.error("--url is required")
        kw = {"url": args.url, "timeout": 30, "prefer_grpc": args.prefer_grpc}
        if args.grpc_port is not None:
            kw["grpc_port"] = args.grpc_port
        grape = QdrantClient(**kw)
        REST_URL[id(grape)] = args.url
    ref = QdrantClient(":memory:")

    passed = failed = skipped = 0
    dump = {}
    t_start = time.monotonic()
    for name, fn in steps:
        t0 = time.monotonic()
        exp = run_side(fn, ref)
        got = run_side(fn, grape)
        took = time.monotonic() - t0
        if args.dump:
            dump[name] = {"local": exp[1], "grape": got[1]}
        suffix = f" ({took:.2f}s)" if VERBOSE else ""
        if exp[0] == "skip" or got[0] == "skip":
            skipped += 1
            print(f"skip {name}: {exp[1] if exp[0] == 'skip' else got[1]}")
            continue
        problem = None
        if exp[0] == "exception" and got[0] == "exception":
            problem = f"both sides raised: local {exp[1]} / grape {got[1]}"
        elif exp[0] == "exception":
            problem = f"local mode raised {exp[1]}"
        elif got[0] == "exception":
            problem = f"grape raised {got[1]}"
        else:
            problem = diff(exp[1], got[1])
        if problem is None:
            passed += 1
            print(f"ok {name}{suffix}")
        else:
            failed += 1
            print(f"FAIL {name}: {problem}{suffix}")
            if VERBOSE:
                for side, r in (("local", exp), ("grape", got)):
                    if r[0] == "exception":
                        print(f"  {side} traceback:\n{r[2]}", file=sys.stderr)
        sys.stdout.flush()

    ref.close()
    grape.close()
    if tmpdir:
        shutil.rmtree(tmpdir, ignore_errors=True)
    if args.dump:
        with open(args.dump, "w") as f:
            json.dump(dump, f, indent=1, default=str)
    if VERBOSE:
        print(f"total {time.monotonic() - t_start:.1f}s", file=sys.stderr)
    line = f"{passed} passed, {failed} failed"
    if skipped:
        line += f", {skipped} skipped"
    print(line)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

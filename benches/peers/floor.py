"""Floors of each stage of `alsoborrowed run` for one input on this machine.

For the loans CSV it counts the work no implementation can skip: the bytes to
read, the distinct borrowers to HMAC, the capped pair increments (sum over the
window's borrowers of c*(c-1), c = min(distinct titles, cap)) and the feed files
to write in either layout (titles with at least one partner of support >= k,
uncapped: an upper bound; or the shard files those titles need). It measures this machine's raw rate of each with floor.c (one thread:
page-cache read, pre-keyed HMAC-SHA256, a tight increment loop over as many
counters as the window has titles, small files created in one directory then
syncfs) and prints a Markdown table of quantity / rate = floor seconds.

  python3 floor.py LOANS.csv FIRST LAST K CAP [--files N] [--scratch DIR] [--layout titles|shards]
"""

import argparse
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def quantities(path, first, last, k, cap, files):
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    t = pacsv.read_csv(
        path,
        convert_options=pacsv.ConvertOptions(
            include_columns=["borrower_id", "title_id", "loan_date"],
            column_types={"borrower_id": "string", "title_id": "string", "loan_date": "string"},
        ),
    )
    borrowers = pc.count_distinct(t["borrower_id"]).as_py()
    month = pc.utf8_slice_codeunits(t["loan_date"], 0, 7)
    w = t.filter(pc.and_(pc.greater_equal(month, first), pc.less_equal(month, last)))
    b = pc.dictionary_encode(w["borrower_id"]).combine_chunks().indices.to_numpy().astype(np.int64)
    ti = pc.dictionary_encode(w["title_id"]).combine_chunks()
    titles = len(ti.dictionary)
    cells = np.unique(b * titles + ti.indices.to_numpy().astype(np.int64))
    per_borrower = np.bincount(cells // titles).astype(np.int64)
    c = np.minimum(per_borrower[per_borrower > 0], cap)
    increments = int((c * (c - 1)).sum())
    if files is None:
        import peers
        import scipy.sparse as sp

        a = peers.incidence(path, first, last)
        co = sp.triu(a.T @ a, k=1).tocoo()
        strong = co.data >= k
        files = len(np.union1d(co.row[strong], co.col[strong]))
    return {
        "bytes": os.path.getsize(path),
        "borrowers": borrowers,
        "titles": titles,
        "increments": increments,
        "files": files,
    }


def rates(path, titles, scratch, files):
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "floor")
        subprocess.run(["cc", "-O2", "-o", exe, os.path.join(here, "floor.c"), "-lcrypto"], check=True)

        def run(*args):
            out = subprocess.run([exe, *map(str, args)], check=True, capture_output=True, text=True).stdout
            return float(out.strip().split("=")[1])

        return {
            "read": run("read", path),
            "hmac": run("hmac", 2_000_000),
            "incr": run("incr", 500_000_000, max(titles, 1)),
            "files": run("files", scratch, min(max(files, 1000), 50_000)),
        }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("first")
    ap.add_argument("last")
    ap.add_argument("k", type=int)
    ap.add_argument("cap", type=int)
    ap.add_argument("--files", type=int, help="feed files to write (default: counted with SciPy)")
    ap.add_argument("--scratch", default=None, help="directory on the export's file system")
    ap.add_argument("--layout", choices=["titles", "shards"], default="shards", help="feed layout in the total")
    a = ap.parse_args()
    q = quantities(a.csv, a.first, a.last, a.k, a.cap, a.files)
    r = rates(a.csv, q["titles"], a.scratch or os.path.dirname(os.path.abspath(a.csv)), q["files"])
    cores = os.cpu_count() or 1
    stages = [
        ("read the input", f"{q['bytes'] / 1e6:,.1f} MB", q["bytes"], r["read"] / 1e6, "MB/s", r["read"], True),
        ("pseudonymize", f"{q['borrowers']:,} distinct borrowers", q["borrowers"], r["hmac"] / 1e6, "M HMAC/s", r["hmac"], True),
        ("count pairs", f"{q['increments']:,} capped increments", q["increments"], r["incr"] / 1e6, "M incr/s", r["incr"], True),
    ]
    # Layout "titles": one file per title with related titles; "shards": 2^bits
    # files of at most 32 titles on average (alsoborrowed_feed::shard_bits_for).
    bits = 0
    while bits < 16 and q["files"] > 32 << bits:
        bits += 1
    feeds = {"titles": q["files"], "shards": 1 << bits}
    for layout, files in feeds.items():
        name = f"write the feed ({layout})" + ("" if layout == a.layout else ", not in the total")
        stages.append((name, f"{files:,} files", files, r["files"], "files/s", r["files"], False))
    print(f"| stage | work | raw rate (1 thread) | floor s (1 thread) | floor s ({cores} threads) |")
    print("|---|---|---|---|---|")
    total1 = totaln = 0.0
    for name, work, amount, shown, unit, rate, parallel in stages:
        s1 = amount / rate
        sn = s1 / cores if parallel else s1
        if "not in the total" not in name:
            total1 += s1
            totaln += sn
        print(f"| {name} | {work} | {shown:,.1f} {unit} | {s1:.4f} | {sn:.4f} |")
    print(f"| total | window: {q['titles']:,} titles, cap {a.cap}, k {a.k}, layout {a.layout} | | {total1:.4f} | {totaln:.4f} |")


if __name__ == "__main__":
    main()

"""The same counting job as alsoborrowed, done by the tools libraries use today.

Job: over loans in [first, last] (months, YYYY-MM), count for every pair of titles
the number of distinct borrowers who borrowed both, and keep pairs with count >= k.
Prints one line: tool, pairs kept, sum of their counts (a checksum to compare with
alsoborrowed's output).

  python3 peers.py duckdb   LOANS.csv FIRST LAST K
  python3 peers.py scipy    LOANS.csv FIRST LAST K
  python3 peers.py polars   LOANS.csv FIRST LAST K
  python3 peers.py implicit LOANS.csv FIRST LAST K [N]
  python3 peers.py implicit-check LOANS.csv FIRST LAST K [N]

duckdb, scipy and polars are exact. implicit (CosineRecommender, the item-item
model) keeps only the N nearest neighbours of each title, so its line counts
the kept directed neighbours with count >= k, not comparable with the exact
totals; implicit-check (not timed) recovers the co-occurrence count of every
kept neighbour from its cosine and checks it against the exact count.
"""

import sys


def duckdb_job(path, first, last, k):
    import duckdb

    con = duckdb.connect()
    n, total = con.execute(
        """
        WITH l AS (
            SELECT DISTINCT borrower_id AS b, title_id AS t
            FROM read_csv(?, header = true, all_varchar = true)
            WHERE substr(loan_date, 1, 7) BETWEEN ? AND ?
        ), p AS (
            SELECT x.t AS a, y.t AS c, count(*) AS n
            FROM l x JOIN l y ON x.b = y.b AND x.t < y.t
            GROUP BY 1, 2
            HAVING count(*) >= ?
        )
        SELECT count(*), coalesce(sum(n), 0) FROM p
        """,
        [path, first, last, k],
    ).fetchone()
    return n, total


def incidence(path, first, last):
    """Borrower x title 0/1 matrix of the window (CSR), from pyarrow's CSV reader."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    import scipy.sparse as sp

    t = pacsv.read_csv(
        path,
        convert_options=pacsv.ConvertOptions(
            include_columns=["borrower_id", "title_id", "loan_date"],
            column_types={"borrower_id": "string", "title_id": "string", "loan_date": "string"},
        ),
    )
    month = pc.utf8_slice_codeunits(t["loan_date"], 0, 7)
    keep = pc.and_(pc.greater_equal(month, first), pc.less_equal(month, last))
    t = t.filter(keep)
    b = pc.dictionary_encode(t["borrower_id"]).combine_chunks()
    ti = pc.dictionary_encode(t["title_id"]).combine_chunks()
    rows = b.indices.to_numpy()
    cols = ti.indices.to_numpy()
    a = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.int32), (rows, cols)),
        shape=(len(b.dictionary), len(ti.dictionary)),
    )
    a.data[:] = 1  # repeat loans count once (duplicates were summed)
    return a


def scipy_job(path, first, last, k):
    import scipy.sparse as sp

    a = incidence(path, first, last)
    c = sp.triu(a.T @ a, k=1).tocoo()
    kept = c.data[c.data >= k]
    return int(len(kept)), int(kept.sum())


def polars_job(path, first, last, k):
    import polars as pl

    # Integer codes before the join: joining on strings is several times slower,
    # and anyone tuning this job would do the same.
    l = (
        pl.scan_csv(path, schema_overrides={"borrower_id": pl.String, "title_id": pl.String, "loan_date": pl.String})
        .select("borrower_id", "title_id", "loan_date")
        .filter(pl.col("loan_date").str.slice(0, 7).is_between(pl.lit(first), pl.lit(last)))
        .select(
            pl.col("borrower_id").cast(pl.Categorical).to_physical().alias("b"),
            pl.col("title_id").cast(pl.Categorical).to_physical().alias("t"),
        )
        .unique()
        .collect()
        .lazy()
    )
    p = (
        l.join(l, on="b", suffix="_y")
        .filter(pl.col("t") < pl.col("t_y"))
        .group_by("t", "t_y")
        .agg(pl.len().alias("n"))
        .filter(pl.col("n") >= k)
        .select(pl.len().alias("pairs"), pl.col("n").sum().alias("total"))
        .collect()
    )
    return int(p["pairs"][0]), int(p["total"][0] or 0)


def implicit_model(path, first, last, n):
    from implicit.nearest_neighbours import CosineRecommender

    a = incidence(path, first, last).astype("float32")
    # K counts the title itself, which is its own nearest neighbour.
    model = CosineRecommender(K=n + 1)
    model.fit(a, show_progress=False)
    return a, model.similarity.tocoo()


def implicit_counts(a, sim):
    """Co-occurrence count of every kept off-diagonal neighbour: cos * sqrt(n_a n_b) on 0/1 data."""
    import numpy as np

    per_title = np.asarray((a > 0).sum(axis=0)).ravel().astype(np.float64)
    off = sim.row != sim.col
    rows, cols, cos = sim.row[off], sim.col[off], sim.data[off].astype(np.float64)
    counts = cos * np.sqrt(per_title[rows] * per_title[cols])
    return rows, cols, counts


def implicit_job(path, first, last, k, n=20):
    import numpy as np

    a, sim = implicit_model(path, first, last, n)
    _, _, counts = implicit_counts(a, sim)
    kept = np.rint(counts)
    kept = kept[kept >= k]
    return int(len(kept)), int(kept.sum())


def implicit_check(path, first, last, k, n=20):
    import numpy as np

    a, sim = implicit_model(path, first, last, n)
    rows, cols, counts = implicit_counts(a, sim)
    rounded = np.rint(counts)
    drift = float(np.max(np.abs(counts - rounded))) if len(counts) else 0.0
    b = (a > 0).astype(np.int32)
    exact = (b.T @ b).tocsr()
    want = np.asarray(exact[rows, cols]).ravel()
    bad = int(np.count_nonzero(rounded != want))
    mask = rounded >= k
    print(
        f"implicit-check neighbours={len(rows)} with_support_ge_k={int(mask.sum())} "
        f"mismatches={bad} max_rounding={drift:.2e}"
    )
    if bad or drift > 0.01:
        sys.exit("implicit-check: kept co-occurrence counts differ from the exact counts")
    return int(mask.sum()), int(rounded[mask].sum())


def main():
    tool, path, first, last, k = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    jobs = {
        "duckdb": duckdb_job,
        "scipy": scipy_job,
        "polars": polars_job,
        "implicit": implicit_job,
        "implicit-check": implicit_check,
    }
    extra = [int(x) for x in sys.argv[6:]]
    n, total = jobs[tool](path, first, last, k, *extra)
    print(f"{tool} pairs={n} support_sum={total}")


if __name__ == "__main__":
    main()

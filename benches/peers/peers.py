"""The same counting job as alsoborrowed, done by the tools libraries use today.

Job: over loans in [first, last] (months, YYYY-MM), count for every pair of titles
the number of distinct borrowers who borrowed both, and keep pairs with count >= k.
Prints one line: tool, pairs kept, sum of their counts (a checksum to compare with
alsoborrowed's output).

  python3 peers.py duckdb LOANS.csv FIRST LAST K
  python3 peers.py scipy  LOANS.csv FIRST LAST K
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


def scipy_job(path, first, last, k):
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
    c = sp.triu(a.T @ a, k=1).tocoo()
    kept = c.data[c.data >= k]
    return int(len(kept)), int(kept.sum())


def main():
    tool, path, first, last, k = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    n, total = {"duckdb": duckdb_job, "scipy": scipy_job}[tool](path, first, last, k)
    print(f"{tool} pairs={n} support_sum={total}")


if __name__ == "__main__":
    main()

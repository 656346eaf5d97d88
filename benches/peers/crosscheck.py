"""Recount published pairs from the raw input with DuckDB, independently of the Rust code."""

import argparse
import csv
import glob
import hashlib
import json
import math
import os
import sys

import duckdb
import jsonschema
import pyarrow.parquet as pq


def xlogx(x):
    return 0.0 if x == 0 else x * math.log(x)


def entropy(*xs):
    return xlogx(sum(xs)) - sum(xlogx(x) for x in xs)


def llr(k11, k12, k21, k22):
    """Apache Mahout's LogLikelihood.logLikelihoodRatio."""
    row = entropy(k11 + k12, k21 + k22)
    col = entropy(k11 + k21, k12 + k22)
    mat = entropy(k11, k12, k21, k22)
    return 0.0 if row + col < mat else 2.0 * (row + col - mat)


def unescape(title):
    # pairs.csv defuses spreadsheet formulas with a leading apostrophe.
    if title.startswith("'") and len(title) > 1 and title[1] in "=+-@\t\r":
        return title[1:]
    return title


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--release", required=True)
    ap.add_argument("--first", required=True)
    ap.add_argument("--last", required=True)
    ap.add_argument("--k", type=int, required=True)
    ap.add_argument("--schema", required=True)
    ap.add_argument("--exact-llr", action="store_true")
    ap.add_argument("--store", help="the store the release was built from: its files are read too")
    a = ap.parse_args()

    con = duckdb.connect()
    con.execute(
        """
        CREATE TABLE l AS
        SELECT DISTINCT upper(trim(borrower_id)) AS b, trim(title_id) AS t
        FROM read_csv(?, header = true, all_varchar = true)
        WHERE substr(loan_date, 1, 7) BETWEEN ? AND ?
        """,
        [a.input, a.first, a.last],
    )
    n_borrowers = con.execute("SELECT count(DISTINCT b) FROM l").fetchone()[0]
    per_title = dict(con.execute("SELECT t, count(*) FROM l GROUP BY t").fetchall())

    with open(os.path.join(a.release, "pairs.csv"), newline="", encoding="utf-8") as f:
        rows = [(unescape(r["title_a"]), unescape(r["title_b"]), float(r["score"])) for r in csv.DictReader(f)]
    if not rows:
        sys.exit("crosscheck: no published pairs")

    con.execute("CREATE TABLE p(a VARCHAR, b VARCHAR, score DOUBLE)")
    con.executemany("INSERT INTO p VALUES (?, ?, ?)", rows)
    support = con.execute(
        """
        SELECT p.a, p.b, p.score, count(DISTINCT x.b) AS both
        FROM p JOIN l x ON x.t = p.a JOIN l y ON y.t = p.b AND y.b = x.b
        GROUP BY p.a, p.b, p.score
        """
    ).fetchall()
    found = {(r[0], r[1]) for r in support}
    missing = [r for r in rows if (r[0], r[1]) not in found]
    if missing:
        sys.exit(f"crosscheck: {len(missing)} published pairs have no co-borrower at all in the input")
    below = [r for r in support if r[3] < a.k]
    if below:
        sys.exit(f"crosscheck: {len(below)} published pairs have support below k={a.k}")
    worst = 0.0
    if a.exact_llr:
        for ta, tb, score, k11 in support:
            na, nb = per_title[ta], per_title[tb]
            expect = llr(k11, na - k11, nb - k11, n_borrowers - na - nb + k11)
            rel = abs(score - expect) / max(abs(expect), 1e-300)
            worst = max(worst, rel)
            if rel > 1e-9:
                sys.exit(f"crosscheck: LLR mismatch: published {score!r}, recount {expect!r}")

    # pairs.parquet opens in DuckDB and pyarrow and says what pairs.csv says.
    pq_path = os.path.join(a.release, "pairs.parquet")
    via_duckdb = con.execute("SELECT title_a, title_b, score FROM read_parquet(?)", [pq_path]).fetchall()
    via_arrow = pq.read_table(pq_path).to_pylist()
    if [(r[0], r[1], r[2]) for r in via_duckdb] != rows:
        sys.exit("crosscheck: pairs.parquet (DuckDB) differs from pairs.csv")
    if [(r["title_a"], r["title_b"], r["score"]) for r in via_arrow] != rows:
        sys.exit("crosscheck: pairs.parquet (pyarrow) differs from pairs.csv")

    # The store's data files open in DuckDB and pyarrow, and hold each
    # window month's titles with as many distinct pseudonyms as the input
    # has distinct borrowers.
    stored = ""
    if a.store:
        data = sorted(glob.glob(os.path.join(a.store, "loans", "month=*", "*.parquet")))
        expect = set(
            con.execute(
                """
                SELECT substr(loan_date, 1, 7), trim(title_id), count(DISTINCT upper(trim(borrower_id)))
                FROM read_csv(?, header = true, all_varchar = true)
                WHERE substr(loan_date, 1, 7) BETWEEN ? AND ?
                GROUP BY ALL
                """,
                [a.input, a.first, a.last],
            ).fetchall()
        )
        via_duckdb = set(
            con.execute(
                """
                SELECT strftime(month, '%Y-%m') AS m, title, count(DISTINCT (pseudonym_hi, pseudonym_lo))
                FROM read_parquet(?, hive_partitioning = false) WHERE m BETWEEN ? AND ? GROUP BY ALL
                """,
                [data, a.first, a.last],
            ).fetchall()
        )
        borrowers = {}
        for path in data:
            for r in pq.read_table(path, columns=["pseudonym_hi", "pseudonym_lo", "title", "month"]).to_pylist():
                m = r["month"].strftime("%Y-%m")
                if a.first <= m <= a.last:
                    borrowers.setdefault((m, r["title"]), set()).add((r["pseudonym_hi"], r["pseudonym_lo"]))
        via_arrow = {(m, t, len(b)) for (m, t), b in borrowers.items()}
        if via_duckdb != expect:
            sys.exit("crosscheck: the store's files (DuckDB) do not hold the input's loans")
        if via_arrow != expect:
            sys.exit("crosscheck: the store's files (pyarrow) do not hold the input's loans")
        stored = f"{len(data)} store files read by DuckDB and pyarrow ({len(expect)} month titles); "

    # Every feed file validates against the published schema.
    with open(a.schema, encoding="utf-8") as f:
        schema = json.load(f)
    feed = os.path.join(a.release, "feed")
    files = [os.path.join(feed, "index.json")] + sorted(
        glob.glob(os.path.join(feed, "titles", "*.json")) + glob.glob(os.path.join(feed, "shards", "*.json"))
    )
    validator = jsonschema.Draft202012Validator(schema)
    with open(files[0], encoding="utf-8") as f:
        bits = json.load(f).get("shard_bits")
    lists = {}
    for path in files:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        errors = list(validator.iter_errors(doc))
        if errors:
            sys.exit(f"crosscheck: {path} does not validate: {errors[0].message}")
        if "related" in doc:
            lists[doc["title"]] = doc["related"]
        for t in doc.get("titles", []) if isinstance(doc.get("titles"), list) else []:
            # docs/feed.md's shard function, written again here.
            head = int.from_bytes(hashlib.sha256(t["title"].encode()).digest()[:4], "big")
            if (head >> (32 - bits) if bits else 0) != int(doc["shard"], 16):
                sys.exit(f"crosscheck: {path} holds a title of another shard")
            lists[t["title"]] = t["related"]
    # The feed lists exactly the pairs of pairs.csv, in the same order, and
    # carries no number but the format's own (no score, no count).
    from_rows = {}
    for r in rows:
        from_rows.setdefault(r[0], []).append(r[1])
    if lists != from_rows:
        sys.exit("crosscheck: the feed's lists differ from pairs.csv")

    print(
        f"crosscheck ok: {len(rows)} published pairs recounted by DuckDB, all with support >= {a.k} "
        f"(smallest {min(r[3] for r in support)}); "
        + (f"LLR equal to 1e-9 (worst relative difference {worst:.2e}); " if a.exact_llr else "")
        + f"pairs.parquet read by DuckDB and pyarrow; {stored}{len(files)} feed files valid"
    )


if __name__ == "__main__":
    main()

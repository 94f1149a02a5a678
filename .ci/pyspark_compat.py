"""assay.spark on another pyspark line than the test suite's (.ci/run installs pyspark 3.5
into a separate directory and runs this with it first on the path): parity with one process,
exact bins, a tree of merges, a worker error as the same typed error. Exits non-zero on any
difference."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyspark
from pyspark.sql import SparkSession

import assay
from assay import spark as aspark
from assay.demo import make_data


def main() -> int:
    print("pyspark", pyspark.__version__)
    spark = (SparkSession.builder.master("local[2]")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    t = make_data(30_000, seed=1)
    t = t.append_column("id", pa.array(np.arange(t.num_rows)))
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "preds.parquet")
        pq.write_table(t, path, row_group_size=3000)
        df = spark.read.parquet(path).repartition(9)
        spec = assay.Spec(label="churned", score="p_churn", bootstrap=30, row_id="id",
                          slices=["country", ("country", "device"), assay.bins("age", 4)])
        got, want = aspark.evaluate(df, spec, fan_in=2).table, spec.evaluate(t).table
        assert got["slice"].to_list() == want["slice"].to_list()
        assert got["n"].to_list() == want["n"].to_list()
        for c in got.columns:
            if got[c].dtype.is_float():
                for a, b in zip(got[c].to_list(), want[c].to_list(), strict=True):
                    assert (a is None) == (b is None), c
                    assert a is None or abs(a - b) <= 1e-12 * max(1.0, abs(b)), (c, a, b)
        assert aspark.accumulate(df, spec).spec == spec.resolve(t)
        bad = spark.read.parquet(path).selectExpr(
            "*", "case when id = 5 then 3 else cast(churned as int) end as y2")
        try:
            aspark.evaluate(bad, assay.Spec(label="y2", score="p_churn"))
        except assay.InvalidInputError as e:
            assert e.column == "y2" and "labels must be 0 or 1" in str(e), e
        else:
            raise AssertionError("a bad label was not raised")
    spark.stop()
    print("assay.spark on pyspark", pyspark.__version__, "OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())

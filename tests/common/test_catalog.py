"""With a persistent catalog (a Hive metastore; on EMR, Glue), the jobs register each
table there once and address it by name; a name the catalog gives to another lakehouse's
table stops a job before it writes anything. Real spark-submit jobs, an embedded Derby
metastore in a temporary folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.imagegen import gradient, jpeg_bytes, write
from tests.submit import ROOT, environment, finish, start

PROBE = """
import common  # noqa: F401
import json, sys
from common.config import load_config, parse_override
from common.lake import named_catalog, table
from common.spark import build_session
from bronze.tables import BRONZE_IMAGES
from silver.tables import SILVER_IMAGES, SILVER_REJECTS

lakehouse, *sets = sys.argv[1:]
config = load_config("local", dict(parse_override(s) for s in sets))
spark = build_session(config, "catalog-probe", register=False)  # names from the metastore
silver = table(spark, SILVER_IMAGES, lakehouse)
print("PROBE " + json.dumps({
    "named": named_catalog(spark),
    "by_name": silver.by_name,
    "tables": sorted(f"{r.namespace}.{r.tableName}" for db in ("bronze", "silver", "ops")
                     for r in spark.sql(f"SHOW TABLES IN {db}").collect()),
    "labels": sorted(tuple(r) for r in spark.sql(
        "SELECT label, count(*) FROM silver.images GROUP BY label").collect()),
    "rejects": [tuple(r) for r in spark.sql("SELECT reason FROM silver.rejects").collect()],
    "bronze_at_0": spark.sql("SELECT count(*) FROM bronze.images VERSION AS OF 0").first()[0],
    "history": [r.operation for r in spark.sql(
        "DESCRIBE HISTORY silver.images").orderBy("version").collect()],
    "location": silver.location,
}))
"""


@pytest.mark.slow
def test_jobs_address_the_tables_by_name_in_a_metastore(tmp_path: Path) -> None:
    meta = tmp_path / "metastore"
    sets = [
        "spark.extra.spark.sql.catalogImplementation=hive",
        "spark.extra.spark.hadoop.javax.jdo.option.ConnectionURL="
        f"jdbc:derby:;databaseName={meta}/db;create=true",
        f"spark.extra.spark.sql.warehouse.dir={meta}/warehouse",
        "spark.driver_java_options=-XX:TieredStopAtLevel=1 -XX:+UseSerialGC "
        f"-Dderby.stream.error.file={meta}/derby.log",
    ]
    options = [a for s in sets for a in ("--set", s)]
    source = tmp_path / "photos"
    for i in range(3):
        write(source / "Apple" / f"a{i}.jpg", jpeg_bytes(gradient(seed=i)))
    write(source / "Kiwi" / "k0.jpg", jpeg_bytes(gradient(seed=7)))
    (source / "Kiwi" / "broken.jpg").write_bytes(b"not a photo")
    lakehouse = tmp_path / "lh"

    rc, out = finish(start("bronze", lakehouse, "--source", str(source), *options))
    assert rc == 0, out
    rc, out = finish(start("silver", lakehouse, *options))
    assert rc == 0, out
    rc, out = finish(start("silver", lakehouse, *options))  # by name, nothing new
    assert rc == 0, out

    probe = tmp_path / "probe.py"
    probe.write_text(PROBE, encoding="utf-8")
    profile = subprocess.run(
        [sys.executable, "-m", "common.spark", "--submit-args", "--lakehouse", str(lakehouse),
         *options], cwd=ROOT, check=True, capture_output=True, text=True).stdout.splitlines()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "spark-submit"), *profile, str(probe),
         str(lakehouse), *sets], cwd=ROOT, env=environment(), capture_output=True, text=True,
        timeout=600)
    line = next((x for x in done.stdout.splitlines() if x.startswith("PROBE ")), None)
    assert line, done.stdout + done.stderr
    found = json.loads(line.removeprefix("PROBE "))
    assert found["named"] is True and found["by_name"] is True
    assert found["tables"] == ["bronze.images", "ops.runs", "silver.images", "silver.rejects"]
    assert found["labels"] == [["Apple", 3], ["Kiwi", 1]]
    assert found["rejects"] == [["not_an_image"]]
    assert found["bronze_at_0"] == 0  # time travel by name: version 0 is the empty table
    # created, registered, one append; the second run wrote nothing
    assert found["history"] == ["CREATE TABLE", "ADD CONSTRAINT", "WRITE"]

    # Another lakehouse under the same metastore: the names are taken, nothing is written.
    other = tmp_path / "other"
    rc, out = finish(start("bronze", other, "--source", str(source), *options))
    assert rc == 4, out
    assert (f"the catalog's bronze.images is the table at {lakehouse}/bronze/images, not this "
            f"lakehouse's {other}/bronze/images") in " ".join(out.split())
    assert not (other / "bronze").exists() and not (other / "ops").exists()

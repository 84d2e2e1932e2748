"""Job code runs over Spark Connect (Databricks serverless, standard-access clusters), where there
is no SparkContext, JVM gateway, Java DataFrame or RDD API. Only ``mlcore/spark_classic.py`` may
touch those, each use with a Connect equivalent beside it; this test fails on any other use in
``mlcore/`` or ``jobs/`` (comments and strings aside)."""

from __future__ import annotations

import io
import tokenize

from tests.conftest import REPO_ROOT

CLASSIC_ONLY = REPO_ROOT / "mlcore" / "spark_classic.py"
FORBIDDEN_NAMES = {"sparkContext", "_jvm", "_jdf", "_jsc", "_jsparkSession", "_sc"}
FORBIDDEN_ATTRIBUTES = {"rdd"}  # df.rdd


def classic_only_uses(source: str) -> list[tuple[int, str]]:
    """(line, name) of every classic-only API the code touches."""
    found = []
    previous = None
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.NAME:
            attribute = previous is not None and previous.type == tokenize.OP and previous.string == "."
            if token.string in FORBIDDEN_NAMES or (attribute and token.string in FORBIDDEN_ATTRIBUTES):
                found.append((token.start[0], token.string))
        if token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT):
            previous = token
    return found


def test_the_scanner_finds_what_connect_lacks_and_ignores_comments_and_strings():
    code = (
        "spark.sparkContext.broadcast(x)\n"
        "rows = df.rdd.map(f)\n"
        "plan = df._jdf.queryExecution()\n"
        "# sparkContext in a comment\n"
        "text = 'spark._jvm in a string'\n"
        "rdd = 3  # a name, not the RDD API\n"
    )
    assert classic_only_uses(code) == [(1, "sparkContext"), (2, "rdd"), (3, "_jdf")]


def test_job_code_uses_no_classic_only_spark_api_outside_spark_classic():
    offenders = []
    for folder in ("mlcore", "jobs"):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            if path == CLASSIC_ONLY:
                continue
            for line, name in classic_only_uses(path.read_text(encoding="utf-8")):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{line}: {name}")
    assert not offenders, (
        "classic-only Spark API outside mlcore/spark_classic.py (fails over Spark Connect; add a "
        "capability there with a Connect equivalent):\n" + "\n".join(offenders)
    )

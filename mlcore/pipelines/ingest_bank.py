"""ingest_bank: UCI bank marketing ``bank-full.csv`` (17 columns) -> Delta ``bank``.

Only the bank-full layout is accepted; any other header (e.g. bank-additional-full's 21
columns) fails before anything is written, naming the expected and the found header. Rows are
validated (integers, yes/no flags and label, month names, day 1..31, non-negative duration and
counts, pdays >= -1); rejected rows go to ``bank_quarantine``. There is no natural key (no client
id), so identical rows are kept.

Written with ``overwrite`` + idempotency token (the file is a full snapshot; see
``mlcore.pipelines._ingest``).
"""

from __future__ import annotations

from mlcore.ingest.rules import classify_bank
from mlcore.ingest.schemas import BANK
from mlcore.ingest.sources import read_csv_source, resolve_bank_source
from mlcore.pipelines._ingest import IngestBatch, configured_rules, replay_summary, run_ingest
from mlcore.pipelines.context import JobContext, JobSummary


def run(ctx: JobContext) -> JobSummary:
    replay = replay_summary(ctx, (BANK,))
    if replay is not None:
        return replay
    source = resolve_bank_source(ctx.config)
    raw = read_csv_source(ctx.spark, source.path, BANK, ctx.config.ingest.limit_rows)
    return run_ingest(
        ctx, [IngestBatch(BANK, classify_bank(raw, configured_rules(ctx, BANK)), source)]
    )

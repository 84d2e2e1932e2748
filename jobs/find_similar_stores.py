"""Find each store's most similar stores (sales shape, seasonality, level, attributes).

    Reads:  sales (the similarity.lookback_days before --run-date), stores
    Writes: store_neighbours (store, neighbour, rank, similarity, distance, level ratio,
            per-block distances; run id, run date), one partition per run date

Re-running for the same run date is a no-op; the planners' service (mlcore serve) reads the
latest partition.

Examples:
    python jobs/find_similar_stores.py --env local --run-date 2015-06-14
    python jobs/find_similar_stores.py --run-date 2015-06-14 --set similarity.k=5
    python -m mlcore run find_similar_stores --run-date 2015-06-14
    ./spark-submit.sh find_similar_stores --env emr --run-date 2015-06-14
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mlcore.runner import run_job


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("find_similar_stores", argv)


if __name__ == "__main__":
    sys.exit(main())

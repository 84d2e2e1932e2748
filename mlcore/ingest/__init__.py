"""Ingest: source layouts and schema contracts, validation rules, source resolution and the
bundled synthetic data generator. Pipelines in ``mlcore.pipelines.ingest_*`` wire these to
Delta tables."""

"""Propensity classification: feature spec, sklearn/imblearn pipelines, randomized search (local
or spread over Spark executors), evaluation, pickle-free model files and batch scoring.

Pure logic on pandas or Spark DataFrames: no table IO and no MLflow here (see
``mlcore.pipelines.train_classifier`` / ``score_classifier`` for the wiring).
"""

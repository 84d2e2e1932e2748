"""Deployable model wrappers (MLflow pyfunc) over mlcore's stored models."""

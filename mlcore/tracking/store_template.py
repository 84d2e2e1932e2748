"""A fresh embedded MLflow store starts as a copy of an empty, already-migrated sqlite database.

MLflow builds a new sqlite store by running its whole alembic migration chain: ~0.9 s measured
here, paid by every new ``MLCORE_HOME`` (each test, each benchmark, a user's first run), against
0.06 s to open a copy of the migrated result. The template is built once per MLflow version with
MLflow's own migration function, in the user's cache folder, and holds no rows: MLflow creates
the default experiment itself when it opens the copy, with this home's artifact root.

Best effort by design: any problem (an unwritable cache, a changed MLflow internal) leaves the
store to MLflow's normal creation path. A copy is linked into place only if no database exists
there yet, so a concurrent first run can never be overwritten.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from pathlib import Path

from mlcore.cache import CACHE_ENV, cache_dir  # noqa: F401 - CACHE_ENV: named here for callers

log = logging.getLogger(__name__)

def template_path(folder: Path | None = None) -> Path:
    import mlflow

    return (folder or cache_dir()) / f"mlflow-{mlflow.__version__}-sqlite-template.db"


def build_template(path: Path) -> Path:
    """Migrate an empty sqlite database to MLflow's current schema and publish it at ``path``
    (atomically: a concurrent builder's identical result may win). Nothing is left behind when
    the build fails."""
    import sqlalchemy
    from mlflow.store.db import utils

    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        engine = sqlalchemy.create_engine(f"sqlite:///{scratch}")
        try:
            utils._initialize_tables(engine)
            complete = utils._all_tables_exist(engine)
        finally:
            engine.dispose()
        if not (complete and usable_template(scratch)):
            raise RuntimeError("MLflow's migrations did not produce an empty, stamped store")
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)
    return path


def usable_template(path: Path) -> bool:
    """A readable sqlite file with MLflow's schema stamp and no experiments (cheap checks, so a
    damaged cache file is rebuilt instead of being copied into every new store)."""
    import sqlite3

    if not path.is_file():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            if db.execute("PRAGMA quick_check").fetchone() != ("ok",):
                return False
            stamp = db.execute("SELECT version_num FROM alembic_version").fetchall()
            experiments = db.execute("SELECT COUNT(*) FROM experiments").fetchone()
    except sqlite3.Error:
        return False
    return len(stamp) == 1 and experiments == (0,)


def seed_store(db_path: Path, folder: Path | None = None) -> bool:
    """Give a not-yet-existing sqlite store at ``db_path`` the migrated template's schema.

    True when the copy was placed; False when a database already exists or the template could
    not be used (MLflow then creates the store itself, as without a template).
    """
    if db_path.exists():
        return False
    scratch = db_path.with_name(f".{db_path.name}.{uuid.uuid4().hex}.tmp")
    try:
        template = template_path(folder)
        if not usable_template(template):
            build_template(template)
        shutil.copyfile(template, scratch)
        os.link(scratch, db_path)  # fails if a store appeared meanwhile: never overwrite one
        return True
    except FileExistsError:
        return False
    except Exception:  # noqa: BLE001 - the template is an optimisation; MLflow's own path remains
        log.debug("MLflow store template not used for %s", db_path, exc_info=True)
        return False
    finally:
        scratch.unlink(missing_ok=True)

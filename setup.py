"""Packaging for mlcore.

Upper bounds are deliberate: pyspark is capped below 4.3 because delta-spark 4.4 declares
``pyspark<=4.2``; pandas below 3 because pyspark 4.2 does not fully support pandas 3;
the other caps are the next major version, whose APIs we have not tested.
"""

from pathlib import Path

from setuptools import find_packages, setup

_VERSION = {}
exec(Path("mlcore/_version.py").read_text(), _VERSION)  # single-source version, no import

_CONNECT = [
    "grpcio>=1.76,<2",
    "grpcio-status>=1.76,<2",
    "googleapis-common-protos>=1.71,<2",
    "zstandard>=0.25,<1",
]

setup(
    name="mlcore",
    version=_VERSION["__version__"],
    description="Spark-based platform for large-scale batch machine learning on Delta tables",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.14",
    packages=find_packages(include=["mlcore", "mlcore.*"]),
    package_data={
        "mlcore": ["py.typed", "log4j2.properties", "fairscheduler.xml"],
        "mlcore.serving": ["static/*.html", "static/*.js", "static/*.css"],
    },
    install_requires=[
        "pyspark>=4.0.1,<4.3",
        "delta-spark>=4.0.0,<4.5",
        "deltalake>=1.1,<2",
        "mlflow>=3.1,<4",
        "pandas>=2.2,<3",
        "numpy>=1.26,<3",
        "pyarrow>=15,<27",
        "prophet>=1.1.5,<2",
        # Gradient-boosted trees per store (the default forecasting family): fast small fits,
        # native missing values, models serialise to text (stored as JSON, never pickled).
        "lightgbm>=4.3,<5",
        "scikit-learn>=1.5,<2",
        "imbalanced-learn>=0.12,<1",
        "skops>=0.10,<1",  # pickle-free sklearn model files
        "scipy>=1.11,<2",
        "PyYAML>=6,<7",
        "matplotlib>=3.8,<4",
        # The planners' service (mlcore serve): FastAPI on uvicorn (uvloop + httptools via
        # "standard": the cached-response latency target needs them), reading Delta with delta-rs.
        "fastapi>=0.115,<1",
        "uvicorn[standard]>=0.30,<1",
        # Swagger UI's files for the service's /docs, served by the service itself (FastAPI's
        # default page loads them from a CDN, blank on a machine without the internet).
        "swagger-ui-bundle>=1.1,<2",
    ],
    extras_require={
        # Spark Connect clients (Databricks serverless, scripts/connect_server.sh): pyspark's own
        # "connect" extra, named here so that the dev install carries it too.
        "connect": _CONNECT,
        "dev": [
            *_CONNECT,
            "pytest>=8,<10",
            "ruff>=0.6,<1",
            # The EMR steps are checked by the AWS CLI's own step builder and botocore's EMR
            # service model (offline), not only by our structure tests.
            "awscli>=1.36,<2",
            # The tracking-server tests run `mlflow server` on PostgreSQL, as users deploy it;
            # SQLAlchemy's PostgreSQL driver (binary wheel: no libpq headers needed).
            "psycopg2-binary>=2.9,<3",
            # The layer contract (scripts/importlinter.ini) is checked by import-linter, and the
            # types of mlcore/ by mypy, in scripts/test.sh: tools, not hand-written checks.
            "import-linter>=2.1,<3",
            "mypy>=1.10,<3",
            # The service's API tests (FastAPI's TestClient) and its dashboard test in headless
            # Chromium (Debian's chromium + chromium-driver; Selenium drives it, no download).
            "httpx>=0.27,<1",
            "selenium>=4.20,<5",
        ],
        # scripts/bench_peers.py measures the peers users copy beside our default: statsforecast's
        # AutoETS through its own Spark backend (fugue) is one of them, so it runs as published.
        "bench": ["statsforecast>=2.0,<3", "fugue[spark]>=0.9,<1"],
    },
    entry_points={"console_scripts": ["mlcore=mlcore.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)

"""The Delta Lake jars for embedded Spark: resolved once at setup time, cached, never downloaded
by a job.

The artifact matches the installed packages the way delta-spark's own
``configure_spark_with_delta_pip`` derives it: ``io.delta:delta-spark_<Spark major.minor>_2.13:
<delta-spark version>``, plus ``io.delta:delta-storage`` at the same version (the only jars a
local session needs; Spark provides the rest). They are fetched with Maven (``mvn
dependency:copy``, which uses whatever mirror or proxy Maven is configured with; Spark's Ivy
resolver does not know Maven's settings) into ``<cache>/delta/<spark>-<version>/``. When the
registry does not serve that exact version (a pip patch release can precede its jars), the
newest earlier patch of the same minor line is taken and the reason is recorded.

Jobs only look in the cache (:func:`cached_jars`): with the jars there ``storage.delta_engine:
auto`` runs on native Delta, without them on delta-rs, and either way the log says which and why.
``python -m mlcore.delta_jars fetch`` (run by ``scripts/setup_env.sh``) fills the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mlcore.cache import cache_dir

SCALA = "2.13"
MARKER = "delta-jars.json"


@dataclass(frozen=True)
class DeltaJars:
    """Cached jars and what they are."""

    version: str  # the Delta release the jars are
    wanted: str  # the installed delta-spark (pip) version
    spark: str  # Spark major.minor
    paths: tuple[str, ...]
    note: str = ""

    @property
    def coordinate(self) -> str:
        return f"io.delta:delta-spark_{self.spark}_{SCALA}:{self.version}"


def installed_versions() -> tuple[str, str]:
    """(Spark major.minor, delta-spark version) of this environment."""
    from importlib.metadata import version

    import pyspark

    spark = ".".join(pyspark.__version__.split(".")[:2])
    return spark, version("delta-spark")


def cache_folder(spark: str | None = None, delta: str | None = None) -> Path:
    if spark is None or delta is None:
        spark, delta = installed_versions()
    return cache_dir() / "delta" / f"spark{spark}-delta{delta}"


def cached_jars(folder: Path | None = None) -> DeltaJars | None:
    """The cached jars for the installed versions, or None (no download, no network)."""
    folder = folder or cache_folder()
    try:
        data = json.loads((folder / MARKER).read_text())
        jars = DeltaJars(
            version=data["version"],
            wanted=data["wanted"],
            spark=data["spark"],
            paths=tuple(str(folder / name) for name in data["jars"]),
            note=data.get("note", ""),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not all(Path(p).is_file() and Path(p).stat().st_size > 0 for p in jars.paths):
        return None
    return jars


def candidate_versions(version: str) -> list[str]:
    """``4.4.1`` -> ``[4.4.1, 4.4.0]``: the version itself, then earlier patches of its line."""
    parts = version.split(".")
    if len(parts) < 3 or not parts[2].isdigit():
        return [version]
    major, minor, patch = parts[0], parts[1], int(parts[2])
    return [f"{major}.{minor}.{p}" for p in range(patch, -1, -1)]


def _maven_copy(artifact: str, into: Path, timeout: float) -> bool:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise FileNotFoundError("mvn (Maven) is not installed")
    command = [mvn, "-q", "-B", "dependency:copy", f"-Dartifact={artifact}",
               f"-DoutputDirectory={into}", "-Dmdep.overWriteReleases=true"]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, check=False, cwd=into
    )
    return result.returncode == 0


def fetch(timeout: float = 300.0, folder: Path | None = None) -> DeltaJars:
    """Put the jars for the installed versions in the cache (a no-op when they are there).

    Raises RuntimeError with one line when they cannot be had (no Maven, no registry, no
    version of the line served) within ``timeout`` seconds.
    """
    spark, wanted = installed_versions()
    folder = folder or cache_folder(spark, wanted)
    found = cached_jars(folder)
    if found is not None:
        return found
    deadline = time.monotonic() + timeout
    folder.parent.mkdir(parents=True, exist_ok=True)
    tried = []
    for version in candidate_versions(wanted):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        staging = Path(tempfile.mkdtemp(prefix=".delta-", dir=folder.parent))
        try:
            names = []
            ok = True
            for artifact in (f"delta-spark_{spark}_{SCALA}", "delta-storage"):
                left = deadline - time.monotonic()
                if left <= 0 or not _maven_copy(f"io.delta:{artifact}:{version}", staging, left):
                    ok = False
                    break
                names.append(f"{artifact}-{version}.jar")
            if not ok:
                tried.append(version)
                continue
            note = (
                ""
                if version == wanted
                else f"delta-spark {wanted}'s jars are not served by the registry; using {version}"
            )
            marker = {"version": version, "wanted": wanted, "spark": spark, "jars": names,
                      "note": note}  # fmt: skip
            (staging / MARKER).write_text(json.dumps(marker))
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(staging, folder)
            jars = cached_jars(folder)
            if jars is None:
                raise RuntimeError(f"fetched Delta jars in {folder} are unreadable")
            return jars
        except subprocess.TimeoutExpired:
            tried.append(version)
            break
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    raise RuntimeError(
        f"no Delta jars for Spark {spark} / delta-spark {wanted} could be fetched with Maven "
        f"(tried {', '.join(tried) or 'nothing'} within {timeout:.0f} s); jobs use delta-rs"
    )


def session_confs(jars: DeltaJars) -> dict[str, str]:
    """What an embedded session needs to run native Delta from the cached jars."""
    return {
        "spark.jars": ",".join(jars.paths),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlcore.delta_jars",
        description="Fetch (once) or show the Delta jars embedded Spark uses for native Delta; "
        "'jars' prints them comma-separated for spark-submit --jars (exit 1: none cached).",
    )
    parser.add_argument("command", choices=["fetch", "show", "jars"])
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds (fetch)")
    args = parser.parse_args(argv)
    if args.command == "jars":
        jars = cached_jars()
        if jars is None:
            return 1
        print(",".join(jars.paths))
        return 0
    if args.command == "show":
        jars = cached_jars()
        if jars is None:
            print(f"no Delta jars cached in {cache_folder()}")
            return 1
        print(f"{jars.coordinate} in {cache_folder()}" + (f" ({jars.note})" if jars.note else ""))
        return 0
    try:
        jars = fetch(args.timeout)
    except (RuntimeError, OSError) as exc:
        print(f"delta jars: {exc}", file=sys.stderr)
        return 1
    print(f"delta jars: {jars.coordinate} in {cache_folder()}" + (f" ({jars.note})" if jars.note else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

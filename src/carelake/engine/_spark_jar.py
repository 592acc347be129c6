"""carelake's Java function for Spark (``VariantScale.java``), compiled once with the JDK's javac.

Spark's SQL cannot read the scale a JSON decimal was written with, and Python and SQL UDFs cannot run
inside the lambdas compiled views use; a Java UDF can (see the Java file for why the scale matters).
The jar is built on first use into a cache keyed by the source and the Spark version, so a Spark start
pays javac (about 1.5 s) once per machine. Over Spark Connect the jar is sent to the session as an artifact.
Without javac (a JRE only) no jar is built: the engine still runs, and a query that needs the function fails
with an error that says what to install.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

from carelake.errors import EngineError

SOURCE = Path(__file__).with_name("VariantScale.java")
FUNCTION = "cl_variant_scale"
CLASS = "carelake.spark.VariantScale"


def _javac() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "javac").is_file():
        return str(Path(home) / "bin" / "javac")
    return shutil.which("javac")


def _cache() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "carelake" / "spark"


def _spark_jars() -> Path:
    """Spark's own jars, to compile against: ``$SPARK_HOME/jars``, or those pip's pyspark ships."""
    import pyspark

    home = os.environ.get("SPARK_HOME")
    return Path(home) / "jars" if home else Path(pyspark.__file__).parent / "jars"


def udf_jar() -> Path | None:
    """The jar holding ``cl_variant_scale``, built if needed; None where no javac is installed."""
    import pyspark

    key = hashlib.sha256(SOURCE.read_bytes() + pyspark.__version__.encode()).hexdigest()[:16]
    jar = _cache() / f"carelake-spark-{key}.jar"
    if jar.is_file():
        return jar
    javac = _javac()
    if javac is None or not _spark_jars().is_dir():  # no JDK, or a Spark Connect client without Spark's jars
        return None
    jar.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=jar.parent) as tmp:
        classes = Path(tmp) / "classes"
        classpath = str(_spark_jars() / "*")
        done = subprocess.run(
            [javac, "--release", "17", "-nowarn", "-cp", classpath, "-d", str(classes), str(SOURCE)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or ["javac failed"])[0]
            raise EngineError(
                f"could not compile carelake's Spark function: {first}",
                hint=f"javac is {javac}: it must come with JDK 17 or newer (set JAVA_HOME to one)",
            )
        built = Path(tmp) / "udf.jar"
        with zipfile.ZipFile(built, "w") as archive:
            for path in sorted(classes.rglob("*.class")):
                archive.write(path, path.relative_to(classes).as_posix())
        os.replace(built, jar)  # atomic: a concurrent start sees the whole jar or none
    return jar

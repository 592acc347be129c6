"""Patient matching: probabilistic record linkage of Patient records with Splink, on DuckDB or Spark.

    >>> import carelake as cl
    >>> from carelake.match import match_patients
    >>> summary = match_patients(cl.open_lake("my-lake"), threshold=0.9)   # doctest: +SKIP
    >>> cl.open_lake("my-lake").sql("SELECT * FROM patient_links")         # doctest: +SKIP

See docs/matching.md for the fields, the model and the measured accuracy.
"""

from carelake.match._fields import FIELDS_VIEW
from carelake.match._match import LINKS_TABLE, PAIRS_TABLE, MatchSummary, match_patients

__all__ = ["FIELDS_VIEW", "LINKS_TABLE", "PAIRS_TABLE", "MatchSummary", "match_patients"]

"""Features: what was known about a patient at each index time, computed in SQL with no look-ahead.

    >>> import carelake.features as features
    >>> features.build_features("readmission-30d", lake=lake).rows   # doctest: +SKIP
    742

See docs/cohorts.md (Features) for the default definition and how to write your own.
"""

from carelake.features._build import FeatureResult, build_features, feature_sql, load_spec

__all__ = ["FeatureResult", "build_features", "feature_sql", "load_spec"]

"""Metric names a PromQL expression reads (a small lexer: enough for dashboards and rules, not a parser)."""

from __future__ import annotations

import re

#: PromQL functions, aggregations, keywords and modifiers: identifiers that are never metric names.
KEYWORDS = {
    # aggregations and their modifiers
    *"sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio".split(),
    *"by without on ignoring group_left group_right bool offset and or unless atan2".split(),
    # functions
    *"""abs absent absent_over_time ceil changes clamp clamp_max clamp_min day_of_month day_of_week
    day_of_year days_in_month delta deriv exp floor histogram_avg histogram_count histogram_fraction
    histogram_quantile histogram_stddev histogram_stdvar histogram_sum holt_winters hour idelta increase
    irate label_join label_replace ln log10 log2 minute month predict_linear rate resets round scalar sgn
    sort sort_desc sort_by_label sort_by_label_desc sqrt time timestamp vector year avg_over_time
    min_over_time max_over_time sum_over_time count_over_time quantile_over_time stddev_over_time
    stdvar_over_time last_over_time present_over_time mad_over_time acos acosh asin asinh atan atanh cos
    cosh sin sinh tan tanh deg rad pi""".split(),
    "inf",
    "nan",
}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w$.])[a-zA-Z_:][a-zA-Z0-9_:]*")
_DURATION = re.compile(r"^\d+(ms|s|m|h|d|w|y)$")


def metric_names(expr: str) -> set[str]:
    """The metric (and recording-rule) names `expr` selects."""
    text = _STRING.sub('""', expr)
    text = _BRACES.sub("", text)  # label matchers
    text = _RANGE.sub("", text)  # [5m], [1h:1m]
    text = _GROUPING.sub(r"\1", text)  # label lists of by/without/on/ignoring/group_*
    text = re.sub(r"\boffset\s+-?\w+", "", text)
    names = set()
    for token in _IDENTIFIER.findall(text):
        if token in KEYWORDS or _DURATION.match(token):
            continue
        names.add(token)
    return names

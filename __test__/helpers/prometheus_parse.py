"""Parses Prometheus text (or OpenMetrics with --openmetrics) from stdin with the Prometheus
project's own Python client (prometheus_client) and prints the families as JSON, so the tests
check bulwark's exposition with a parser that is not ours. Exit 3 when the client is missing."""
import json
import sys

try:
    from prometheus_client.parser import text_string_to_metric_families as parse_text
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
except ImportError:
    sys.exit(3)

text = sys.stdin.read()
parse = parse_openmetrics if "--openmetrics" in sys.argv else parse_text
families = [
    {
        "name": family.name,
        "type": family.type,
        "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in family.samples],
    }
    for family in parse(text)
]
json.dump(families, sys.stdout, allow_nan=True)

#!/usr/bin/env python3
"""Parse a /metrics exposition read on stdin with the official Python client's parsers
(PyPI `prometheus-client`, pinned in requirements.txt) and print its families as one JSON
line: [{"name": ..., "type": ..., "samples": N}, ...].

Usage: parse_metrics.py text|openmetrics
  text         Prometheus text format 0.0.4 (prometheus_client.parser)
  openmetrics  OpenMetrics 1.0 (prometheus_client.openmetrics.parser, strict: `# EOF`, types,
               `_total` rules)

Exit status: 0 parsed; 1 the text does not parse (the error on stderr); 2 usage.
"""
import json
import sys

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] not in ("text", "openmetrics"):
        print(__doc__, file=sys.stderr)
        return 2
    text = sys.stdin.read()
    parse = text_families if sys.argv[1] == "text" else openmetrics_families
    try:
        families = [
            {"name": f.name, "type": f.type, "samples": len(f.samples)}
            for f in parse(text)
        ]
    except Exception as e:  # the parsers raise ValueError and friends
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(families))
    return 0


if __name__ == "__main__":
    sys.exit(main())

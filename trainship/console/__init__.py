"""The local web console: a deployment's execution drawn as the Step Functions console
draws it (graph, history), rendered as plain HTML + SVG (pages, server)."""

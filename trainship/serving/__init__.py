"""The inference service: MLflow's scoring protocol plus Prometheus /metrics.

``python -m trainship.serving --model-dir DIR --port N`` serves the pyfunc model in DIR.
Requests are parsed and answered by MLflow's own scoring functions, so responses match
``mlflow models serve`` for every input format (dataframe_split, dataframe_records,
instances, inputs, params, CSV).

Its parts, apart as MLflow's scoring server and KServe's model server keep theirs:

- ``protocol``: MLflow's scoring protocol: what a request is answered with, error documents;
- ``service``: the loaded model of one worker, its batcher (``batching``) and metrics;
- ``http``: the HTTP server, its routes and handler;
- ``guard`` and ``auth_file``: who may call /invocations (the model's auth file, a token
  per request);
- ``metrics``: Prometheus metrics (prometheus_client, multiprocess mode: one scrape sees
  every worker);
- ``workers``: one worker, or forked workers sharing the port under a supervisor;
- ``loading`` and ``load_cache``: getting the model (a pickle of the loaded model when it
  was made for this model and environment);
- ``warnings``: the warning filters workers serve with;
- ``cli`` (``__main__``): the command line.

The image ships this package and ``trainship/__init__.py`` only, so nothing here imports
the rest of trainship.
"""

# What the service needs besides the model's own requirements (pinned like pyproject's
# dependencies, where the same line is; the image adds it to the model's requirements).
REQUIREMENTS = ("prometheus-client==0.26.0",)

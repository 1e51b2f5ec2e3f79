"""What the deployment tells about itself: the event stream, the job metrics, the heartbeats.

- ``events.py``: reading the stream of transitions the store script appends;
- ``metrics.py``: the counters and histograms folded from the stream, and their reading;
- ``heartbeats.py``: the record each live worker keeps fresh in Redis.

Adding a metric:

1. a histogram: add its :class:`~orchestrator_core.telemetry.metrics.HistogramSpec` to
   ``HISTOGRAMS`` (its script name, exported name, help, second label and bounds), have
   ``move`` in ``store/lua/prelude.lua`` put what the value is measured from in the
   transition's event, and call ``observe('<name>', job_type, label, value)`` in
   ``fold`` (``store/lua/metrics.lua``). The bounds reach the script and the API exports
   it with no other change;
2. a counter of transitions is already kept for every ``(type, state)``; a counter of
   anything else is a ``count(field, n)`` in ``fold``, a field parsed in
   ``JobMetrics.decode`` and a family in ``api/collector.py``;
3. a figure of one worker goes into its heartbeat (``WorkerBeat``) and a family in
   ``api/collector.py``; a figure of one API process is a ``prometheus_client`` metric
   registered in ``api/metrics.py``;
4. name it ``orchestrator_<noun>_<unit>``, list it in the README's metrics table, and
   assert its exact value after a known sequence in ``tests/api/test_api_metrics.py``.
"""

"""Demo job types for the orchestrator: ``demo.echo``, ``demo.sleep`` and ``demo.fail``.

Registered through the ``demo`` entry point (``orchestrator_demo.plugin``); nothing
is re-exported here, so importing the package has no effect on the orchestrator.
"""

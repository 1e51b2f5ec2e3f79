"""The worker: a Celery application that runs each job through its plugin."""

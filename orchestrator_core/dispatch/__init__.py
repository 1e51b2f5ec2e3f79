"""Getting a job's message to a worker: the queues, confirmed publishing, submission and
the sweep that publishes whatever the outbox and the retry schedule say is due.

- ``broker.py``: the Celery settings and the queues both services declare;
- ``publisher.py``: sending one message and waiting for the broker's confirm;
- ``submission.py``: store a job, publish its first message, clear its outbox entry;
- ``sweeper.py``: publish due retries, unconfirmed submissions and lost jobs.
"""

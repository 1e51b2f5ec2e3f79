"""Getting a job's message to a worker: the queues, confirmed publishing, submission and
the sweep that publishes whatever the outbox, the retry and the deferred schedules say
is due.

- ``broker.py``: the Celery settings and the queues both services declare;
- ``publisher.py``: sending one message and waiting for the broker's confirm;
- ``submission.py``: store a job, publish its first message, clear its outbox entry;
- ``sweeper.py``: publish due retries, unconfirmed submissions, deferred and lost jobs;
- ``upgrade.py``: give the queues of an earlier release their priorities, losing no message.
"""

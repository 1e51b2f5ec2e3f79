"""The plugin's exceptions: retryable, under one base, and intact through pickling."""

from __future__ import annotations

import pickle

from orchestrator_container import (
    ContainerFailed,
    ContainerRunError,
    ContainerTimeoutError,
    EngineError,
    EngineUnavailableError,
)


def test_the_errors_keep_their_message_and_attributes_through_pickling() -> None:
    errors = (
        ContainerFailed(
            "exited with code 3", exit_code=3, logs="oops\n", image="i", container_id="c"
        ),
        ContainerTimeoutError("ran past", timeout=1.5, logs="", container_id="c"),
        EngineUnavailableError("cannot reach", docker_host="unix:///run/x.sock"),
        EngineError("failed (500)", status_code=500),
    )

    copies = pickle.loads(pickle.dumps(errors))

    for error, copy in zip(errors, copies, strict=True):
        assert type(copy) is type(error)
        assert isinstance(copy, ContainerRunError)
        assert str(copy) == str(error)
        assert copy.__dict__ == error.__dict__
    assert copies[0].exit_code == 3
    assert copies[1].timeout == 1.5

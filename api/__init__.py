"""The REST control plane: validates submissions against the plugins' schemas, never runs jobs."""

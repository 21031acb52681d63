"""The live collector under Dagster: the `stream` job runs `kirby_stream` until cancelled;
the `stream_supervisor` sensor launches it when no collector is healthy and replaces a run
whose heartbeat went stale. See `supervision` for the rules."""

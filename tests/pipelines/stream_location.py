"""A code location holding only the stream job and its supervisor, for tests that run the job
in a real `dagster job execute` process without depending on every other domain's defs."""

import dagster as dg

from kirby_pipelines.defs.stream.jobs import stream_job
from kirby_pipelines.defs.stream.resources import StreamResource
from kirby_pipelines.defs.stream.sensors import stream_supervisor
from kirby_pipelines.resources import KirbyResource

defs = dg.Definitions(
    jobs=[stream_job],
    sensors=[stream_supervisor],
    resources={"kirby": KirbyResource(), "stream": StreamResource(observation_seconds=0.5)},
)

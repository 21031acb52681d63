"""Kirby's Dagster code location: everything under `kirby_pipelines/defs/`, loaded by folder.

Each domain keeps its jobs, assets, sensors and resources in `defs/<domain>/`; this file only
points Dagster at the folder. `kirby_pipelines/dg.toml` names the project; it ships as package
data, so an installed wheel (the Docker image) loads the same way as the repository. Nothing
is read from the environment here: resources build `Settings` when a run or a tick uses them.
"""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)

"""The few Dagster GraphQL calls the stack makes, the way the UI makes them.

Going through the webserver rather than a `DagsterInstance` in this process means the
daemon does the work exactly as it would for a click in the UI: the sensor state is
stored, the backfill daemon turns a backfill into runs, the run queue applies the limits
of dagster.yaml. Errors come back as `StackError` with Dagster's message.
"""

from __future__ import annotations

from typing import Any

import httpx

from kirby_cli.processes import StackError

LOCATION = "kirby"
"""workspace.yaml's code location."""
REPOSITORY = "__repository__"
"""The repository name Dagster gives a `Definitions` object."""
BACKFILL_DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
UNFINISHED_RUNS = ["QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"]

_ERROR = "... on Error { message } ... on PythonError { message }"


class DagsterClient:
    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def query(self, document: str, **variables: Any) -> dict[str, Any]:
        try:
            response = self._http.post("/graphql", json={"query": document, "variables": variables})
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise StackError(f"Dagster GraphQL at {self.base_url} failed: {exc}") from exc
        if body.get("errors"):
            raise StackError(f"Dagster GraphQL: {body['errors'][0].get('message')}")
        return body["data"]

    def _selector(self) -> dict[str, str]:
        return {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}

    def serving(self) -> bool:
        """The webserver answers and has loaded the code location."""
        data = self.query(
            "{ workspaceOrError { ... on Workspace { locationEntries { name"
            " locationOrLoadError { __typename } } } } }"
        )
        entries = data["workspaceOrError"].get("locationEntries", [])
        return any(
            e["name"] == LOCATION and e["locationOrLoadError"]["__typename"] == "RepositoryLocation"
            for e in entries
        )

    def daemon_healthy(self) -> bool:
        data = self.query(
            "{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }"
        )
        statuses = data["instance"]["daemonHealth"]["allDaemonStatuses"]
        return bool(statuses) and all(s["healthy"] for s in statuses if s["required"])

    def set_sensor(self, name: str, running: bool) -> str:
        """Start or stop a sensor; returns its new status (RUNNING / STOPPED)."""
        selector = {**self._selector(), "sensorName": name}
        if running:
            data = self.query(
                "mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) {"
                f" __typename ... on Sensor {{ sensorState {{ status }} }} {_ERROR} }} }}",
                s=selector,
            )["startSensor"]
            return _ok(data, f"start sensor {name}")["sensorState"]["status"]
        state = self.query(
            "query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) {"
            f" __typename ... on Sensor {{ sensorState {{ id status }} }} {_ERROR} }} }}",
            s=selector,
        )["sensorOrError"]
        state = _ok(state, f"find sensor {name}")["sensorState"]
        if state["status"] != "RUNNING":
            return state["status"]
        data = self.query(
            "mutation($id: String!) { stopSensor(id: $id) { __typename"
            f" ... on StopSensorMutationResult {{ instigationState {{ status }} }} {_ERROR} }} }}",
            id=state["id"],
        )["stopSensor"]
        return _ok(data, f"stop sensor {name}")["instigationState"]["status"]

    def add_partitions(self, partitions_def: str, keys: list[str]) -> None:
        """Register dynamic partition keys (what syncing a catalog asset does)."""
        for key in keys:
            data = self.query(
                "mutation($k: String!, $p: String!, $r: RepositorySelector!) {"
                " addDynamicPartition(partitionKey: $k, partitionsDefName: $p,"
                f" repositorySelector: $r) {{ __typename {_ERROR} }} }}",
                k=key,
                p=partitions_def,
                r=self._selector(),
            )["addDynamicPartition"]
            if data["__typename"] != "DuplicateDynamicPartitionError":
                _ok(data, f"add partition {key} to {partitions_def}")

    def delete_partitions(self, partitions_def: str, keys: list[str]) -> None:
        """Drop dynamic partition keys (absent ones are no error)."""
        if not keys:
            return
        data = self.query(
            "mutation($k: [String!]!, $p: String!, $r: RepositorySelector!) {"
            " deleteDynamicPartitions(partitionKeys: $k, partitionsDefName: $p,"
            f" repositorySelector: $r) {{ __typename {_ERROR} }} }}",
            k=keys,
            p=partitions_def,
            r=self._selector(),
        )["deleteDynamicPartitions"]
        _ok(data, f"delete partitions {keys} of {partitions_def}")

    def report_materialization(self, asset: str, description: str) -> None:
        """Record `asset` as materialized without a run (a sync made outside Dagster)."""
        data = self.query(
            "mutation($p: ReportRunlessAssetEventsParams!) { reportRunlessAssetEvents("
            f"eventParams: $p) {{ __typename {_ERROR} }} }}",
            p={
                "eventType": "ASSET_MATERIALIZATION",
                "assetKey": {"path": [asset]},
                "description": description,
            },
        )["reportRunlessAssetEvents"]
        _ok(data, f"record {asset} as materialized")

    def launch_backfill(self, assets: list[str], partitions: list[str], title: str) -> str:
        """An asset backfill of `partitions` (shared by every asset); returns its id."""
        params = {
            "assetSelection": [{"path": [asset]} for asset in assets],
            "partitionNames": partitions,
            "title": title,
            "tags": [{"key": "kirby/launched_by", "value": "stack"}],
        }
        data = self.query(
            "mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {"
            f" __typename ... on LaunchBackfillSuccess {{ backfillId }} {_ERROR} }} }}",
            p=params,
        )["launchPartitionBackfill"]
        return _ok(data, f"launch backfill {title}")["backfillId"]

    def backfill_status(self, backfill_id: str) -> str:
        data = self.query(
            "query($id: String!) { partitionBackfillOrError(backfillId: $id) { __typename"
            f" ... on PartitionBackfill {{ status }} {_ERROR} }} }}",
            id=backfill_id,
        )["partitionBackfillOrError"]
        return _ok(data, f"read backfill {backfill_id}")["status"]

    def unfinished_runs(self, job_name: str | None = None) -> list[dict[str, str]]:
        """Run ids and statuses of the runs (of `job_name`, or all) not finished yet."""
        data = self.query(
            "query($f: RunsFilter) { runsOrError(filter: $f) { __typename"
            f" ... on Runs {{ results {{ runId status }} }} {_ERROR} }} }}",
            f={"statuses": UNFINISHED_RUNS, **({"pipelineName": job_name} if job_name else {})},
        )["runsOrError"]
        return _ok(data, "list runs")["results"]

    def terminate(self, run_ids: list[str]) -> None:
        if run_ids:
            data = self.query(
                "mutation($ids: [String!]!) { terminateRuns(runIds: $ids) {"
                f" __typename {_ERROR} }} }}",
                ids=run_ids,
            )["terminateRuns"]
            _ok(data, "terminate runs")


def _ok(data: dict[str, Any], what: str) -> dict[str, Any]:
    if "message" in data:
        raise StackError(f"Dagster could not {what}: {data['message']}")
    return data

"""The few Dagster GraphQL calls the stack makes, the way the UI makes them.

Going through the webserver rather than a `DagsterInstance` in this process means the
daemon does the work exactly as it would for a click in the UI: the sensor state is
stored, the backfill daemon turns a backfill into runs, the run queue applies the limits
of dagster.yaml. Errors come back as `StackError` with Dagster's message.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from kirby_cli.processes import StackError

LOCATION = "kirby"
"""workspace.yaml's code location."""
REPOSITORY = "__repository__"
"""The repository name Dagster gives a `Definitions` object."""
BACKFILL_DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
BACKFILL_FAILED = {"COMPLETED_FAILED", "FAILED"}
UNFINISHED_RUNS = ["QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"]

_ERROR = "... on Error { message } ... on PythonError { message }"
_EXCEPTION_CLASS = re.compile(r"^[\w.]+: ")
"""How a Python error's message starts: `kirby_core.errors.ExchangeUnavailable: …`."""


class DagsterClient:
    def __init__(
        self, base_url: str, timeout: float = 30.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

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

    def backfill_failure(self, backfill_id: str) -> str | None:
        """Why a backfill failed: its own error, else the root cause of its first failed run's
        first failed step (not the op wrapper's "Error occurred while executing op")."""
        data = self.query(
            "query($id: String!) { partitionBackfillOrError(backfillId: $id) { __typename"
            " ... on PartitionBackfill { error { message causes { message } }"
            f" runs(limit: 100) {{ runId status }} }} {_ERROR} }} }}",
            id=backfill_id,
        )["partitionBackfillOrError"]
        backfill = _ok(data, f"read backfill {backfill_id}")
        if backfill.get("error"):
            return _root_cause(backfill["error"])
        failed = [run["runId"] for run in backfill["runs"] if run["status"] == "FAILURE"]
        if not failed:
            return None
        data = self.query(
            "query($id: ID!) { runOrError(runId: $id) { __typename ... on Run {"
            " eventConnection(limit: 1000) { events { __typename"
            " ... on ExecutionStepFailureEvent { stepKey error { message causes { message } } }"
            f" ... on RunFailureEvent {{ message }} }} }} }} {_ERROR} }} }}",
            id=failed[-1],  # runs come newest first
        )["runOrError"]
        events = _ok(data, f"read run {failed[-1]}")["eventConnection"]["events"]
        for event in events:
            if event["__typename"] == "ExecutionStepFailureEvent" and event.get("error"):
                return f"{event['stepKey']}: {_root_cause(event['error'])}"
        messages = [e["message"] for e in events if e["__typename"] == "RunFailureEvent"]
        return messages[0] if messages else f"run {failed[-1]} failed"

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


def _root_cause(error: dict[str, Any]) -> str:
    """The innermost error's first line, without its exception class."""
    innermost = (error.get("causes") or [error])[-1]
    lines = innermost["message"].strip().splitlines() or [""]
    return _EXCEPTION_CLASS.sub("", lines[0], count=1)


def _ok(data: dict[str, Any], what: str) -> dict[str, Any]:
    if "message" in data:
        raise StackError(f"Dagster could not {what}: {data['message']}")
    return data

"""The record reader and the task facts: every committed record still reads, and keeps its identity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from lra.results.bench import load_bench
from lra.results.records import (
    SCHEMA,
    RecordError,
    ResultsStore,
    read_record,
    read_records,
    sequence_length,
    table_column,
)
from lra.train.identity import identity_key

RESULTS = Path(__file__).resolve().parents[2] / "results"

# The identity (lra.train.config.identity_key) of each committed training record when lra.results was made: the
# campaign finds a run's records and checkpoints by it, so a change to the identity-neutral keys must keep these.
COMMITTED_IDENTITIES = {
    "03aec4f0": "41969d2f9a",
    "0b68c9db": "2c2b6bc659",
    "0bf689f4": "92c6bce6ae",
    "22cba4eb": "9ab4ddb43f",
    "260d0a27": "cfe8304d02",
    "356b222a": "0fd61ae936",
    "3cce6244": "42adfe0ee3",
    "50a38d4e": "220a7a25d9",
    "566571bd": "ad7741d396",
    "5991f939": "96a5507eff",
    "5accb388": "f07b06ccf0",
    "5c07d8b1": "2666531ae7",
    "72f50208": "34a191ef41",
    "749a65b0": "525b6cc1d5",
    "76f37970": "e8979b299c",
    "951a277a": "4598845812",
    "9b0258af": "ede83e077e",
    "a2ed6abd": "203004acb6",
    "a32ffefa": "e4eb92e77d",
    "ae05c365": "a665f8192a",
    "b287c610": "86c7a92e38",
    "bc89b704": "4598845812",
    "c4bffa58": "e99894b0f9",
    "cc54ccff": "e4f71c019d",
    "ce13a2c9": "297c3b764d",
    "d17b5d78": "75724951a7",
    "d4287f33": "ad7741d396",
    "d49c34a3": "034df2bb7b",
    "d8fa4001": "cfe8304d02",
    "dc7523b8": "96a5507eff",
    "e2ef70ac": "86c7a92e38",
    "e6590983": "36a05b8cce",
    "e7112b04": "2666531ae7",
    "f2b190a8": "f73a25c91c",
    "f5debe78": "8172070f2f",
    "fb376ede": "5d6e395067",
}


def test_every_committed_record_reads_through_the_one_reader() -> None:
    runs = list(read_records(RESULTS / "runs"))
    evals = list(read_records(RESULTS / "evals", kind="eval")) if (RESULTS / "evals").is_dir() else []
    assert len(runs) == len(list((RESULTS / "runs").glob("*.json"))) >= len(COMMITTED_IDENTITIES)
    assert all(record["run_id"] == path.stem for path, record in runs + evals)


def test_committed_records_keep_their_identities() -> None:
    identities = {record["run_id"]: identity_key(OmegaConf.create(record["config"]))
                  for _, record in read_records(RESULTS / "runs")}
    assert {run_id: identities[run_id] for run_id in COMMITTED_IDENTITIES} == COMMITTED_IDENTITIES


def test_committed_records_have_their_task_facts() -> None:
    facts = {(record["task"], sequence_length(record), table_column(record["task"], sequence_length(record)))
             for _, record in read_records(RESULTS / "runs")}
    assert {("image", 1024, "image"), ("pathfinder", 1024, "pathfinder"), ("text", 1000, "text"),
            ("listops", 2000, "listops")} <= facts


def test_committed_benchmark_csvs_read() -> None:
    points = load_bench(RESULTS / "bench")
    assert points and all(point.device == "cpu" or point.device.startswith("nvidia") for point in points)


def test_a_new_record_carries_its_sequence_length_and_an_old_one_falls_back_on_its_config() -> None:
    assert sequence_length({"task": "pathfinder", "sequence_length": 16384, "config": {}}) == 16384
    assert sequence_length({"task": "pathfinder", "config": {"task": {"resolution": 128}}}) == 16384
    assert sequence_length({"task": "image", "config": {"task": {}}}) == 1024  # CIFAR-10, before schema 2
    assert sequence_length({"task": "retrieval", "config": {"task": {"max_length": 4000}}}) == 4000
    assert sequence_length({"task": "other", "config": {}}) is None


def test_path_x_is_pathfinder_at_128_by_128() -> None:
    assert table_column("pathfinder", 128 * 128) == "pathx"
    assert table_column("pathfinder", 32 * 32) == table_column("pathfinder", None) == "pathfinder"
    assert table_column("pathfinder", 64 * 64) is None and table_column("listops_small", 500) is None
    assert table_column("text", 4000) == "text"


def test_the_store_writes_the_schema_and_keeps_the_creation_time(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    store.save({"run_id": "r1", "status": "running"})
    created = store.load("r1")["created"]
    record = store.update("r1", status="finished")
    stored = read_record(tmp_path / "runs" / "r1.json")
    assert stored["schema"] == SCHEMA and stored["status"] == "finished" == record["status"]
    assert stored["created"] == created


def test_a_read_only_store_writes_nothing(tmp_path: Path) -> None:
    ResultsStore(tmp_path, writable=False).save({"run_id": "r1"})
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("text", "reason"), [("{not json", "not a valid run record"),
                                              ("[1, 2]", r"not a valid run record \(a JSON object expected\)")])
def test_a_broken_record_is_named_not_skipped(tmp_path: Path, text: str, reason: str) -> None:
    (tmp_path / "broken.json").write_text(text)
    with pytest.raises(RecordError, match=rf"broken\.json: {reason}.*fix or remove the file"):
        list(read_records(tmp_path))


def test_the_reader_passes_over_files_being_written_and_other_kinds(tmp_path: Path) -> None:
    (tmp_path / ".r1.json.1a2b3c.partial-1").write_text("{half")
    (tmp_path / "r1.json").write_text(json.dumps({"run_id": "r1"}))  # before "kind": a training run
    (tmp_path / "e1.json").write_text(json.dumps({"run_id": "e1", "kind": "eval"}))
    assert [record["run_id"] for _, record in read_records(tmp_path)] == ["r1"]
    assert [record["run_id"] for _, record in read_records(tmp_path, kind="eval")] == ["e1"]

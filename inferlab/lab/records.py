"""Measurements recorded on other machines (GPUs), shipped with the course and labelled as such.

Introduced in lesson 00. A notebook running on a laptop CPU cannot measure an H100, but it can
show what an H100 measured, *if it says so*. Each record is a JSON file in
``inferlab/lab/records/`` with at least::

    {"device": "NVIDIA H100 80GB HBM3", "date": "2026-11-26", "source": "how it was measured",
     "results": {...}}

``label(record)`` gives the caption notebooks print beside such numbers.
"""
from __future__ import annotations

import json
from pathlib import Path

RECORDS_DIR = Path(__file__).parent / "records"


def available() -> list[str]:
    return sorted(p.stem for p in RECORDS_DIR.glob("*.json"))


def load(name: str) -> dict:
    """Load record ``name`` (file name without ``.json``); a clear error lists what exists."""
    path = RECORDS_DIR / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no recorded measurement {name!r}; available: {available()}")
    record = json.loads(path.read_text())
    missing = {"device", "date", "results"} - set(record)
    if missing:
        raise ValueError(f"record {name!r} lacks {sorted(missing)}")
    return record


def label(record: dict) -> str:
    return f"recorded on {record['device']}, {record['date']}"


def save(name: str, device: str, date: str, results: dict, source: str = "") -> Path:
    """Write a record (used by the benchmark scripts that run on GPUs)."""
    RECORDS_DIR.mkdir(exist_ok=True)
    path = RECORDS_DIR / f"{name}.json"
    path.write_text(json.dumps({"device": device, "date": date, "source": source,
                                "results": results}, indent=1) + "\n")
    return path

"""Shared test fixtures: small deterministic models and the location of the real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SGDFUSE_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def data_dir() -> Path:
    """The shared real data folder; tests that need it skip where it is absent."""
    if not (DATA / "val" / "msrs100" / "ir").is_dir():
        pytest.skip(f"real data not found at {DATA} (set SGDFUSE_DATA)")
    return DATA

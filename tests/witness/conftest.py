"""Fixtures for the witness tests: where the mcpgw binary and catalog are."""

import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def mcpgw_bin() -> str:
    path = pathlib.Path(os.environ.get("MCPGW_BIN", ROOT / "target" / "debug" / "mcpgw"))
    if not path.exists():
        pytest.fail(f"mcpgw binary not found at {path}: run `cargo build` (make test does)")
    return str(path)


@pytest.fixture(scope="session")
def witness_catalog() -> str:
    return str(ROOT / "tests" / "witness" / "catalog.yaml")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"

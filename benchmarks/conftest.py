"""Shared, pre-built inputs: every peer is timed on the same keys and the same node names."""

import random

import numpy as np
import pytest

N_NODES = 100


@pytest.fixture(scope="session")
def node_names():
    return [f"node{i}" for i in range(1, N_NODES + 1)]


@pytest.fixture(scope="session")
def str_keys():
    # Created in order, so the str objects sit in memory the way a real batch usually does.
    rnd = random.Random(42)
    return [f"user:{rnd.randrange(10**12)}" for _ in range(100_000)]


@pytest.fixture(scope="session")
def hashes():
    return np.random.default_rng(42).integers(0, 2**64 - 1, size=1_000_000, dtype=np.uint64)

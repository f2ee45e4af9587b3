"""Shared fixtures: lab worlds and lab servers on 127.0.0.1."""

from __future__ import annotations

import pytest

from ringfsck.lab import LabServers, generate_world


@pytest.fixture(scope="session")
def lab_world(tmp_path_factory):
    """A small world with every planted feature (splits included). Read-only: tests share it."""
    return generate_world(tmp_path_factory.mktemp("lab-world"), objects=300, seed=3)


@pytest.fixture(scope="session")
def make_world(tmp_path_factory):
    """Factory for worlds with other settings (``generate_world`` keywords), cached per settings."""
    cache = {}

    def make(**settings):
        key = tuple(sorted(settings.items()))
        if key not in cache:
            cache[key] = generate_world(tmp_path_factory.mktemp("world"), **settings)
        return cache[key]

    return make


@pytest.fixture
def lab_servers(lab_world):
    """Fresh servers over the shared world (deletions and faults do not leak between tests)."""
    with LabServers(lab_world.path) as servers:
        yield servers

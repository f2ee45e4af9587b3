"""Shared fixtures: lab worlds and lab servers on 127.0.0.1."""

from __future__ import annotations

import pytest
from hypothesis import settings

from ringfsck.lab import LabServers, generate_world

# Tests check correctness, never wall-clock time: hypothesis's per-example deadline fails
# property tests on a loaded CI machine, so it is off for every test.
settings.register_profile("ringfsck", deadline=None)
settings.load_profile("ringfsck")


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
def ingested(lab_world, tmp_path):
    """A store with the shared world's listkeys and S3 key exports ingested."""
    from ringfsck.config import Settings
    from ringfsck.ingest import ingest_listkeys, ingest_s3keys
    from ringfsck.store import Store

    store = Store.open(Settings(store=str(tmp_path / "store")))
    ingest_listkeys(store, [str(lab_world.listkeys_dir)])
    ingest_s3keys(store, [str(lab_world.s3keys_dir)])
    return store


@pytest.fixture
def lab_servers(lab_world):
    """Fresh servers over the shared world (deletions and faults do not leak between tests)."""
    with LabServers(lab_world.path) as servers:
        yield servers


# --- S3: moto's standalone server on 127.0.0.1, fake credentials for the tests only ---

@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server in a thread, on a free port of 127.0.0.1; its URL."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


class S3Sandbox:
    """One empty bucket on the test server, and the environment that reaches it."""

    ACCESS_KEY = "AKIARINGFSCKTEST0001"
    SECRET_KEY = "ringfsck-test-secret-key-do-not-print"

    def __init__(self, endpoint: str, bucket: str, env: dict[str, str]) -> None:
        import boto3

        self.endpoint = endpoint
        self.bucket = bucket
        self.env = env
        self.client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                   aws_access_key_id=self.ACCESS_KEY, aws_secret_access_key=self.SECRET_KEY)
        self.client.create_bucket(Bucket=bucket)

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


@pytest.fixture
def s3(s3_server, monkeypatch, tmp_path, request):
    """A fresh bucket; AWS_* variables point boto3 at the test server with fake credentials, nothing else."""
    import re
    import uuid

    env = {
        "AWS_ACCESS_KEY_ID": S3Sandbox.ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": S3Sandbox.SECRET_KEY,
        "AWS_ENDPOINT_URL": s3_server,
        "AWS_DEFAULT_REGION": "us-east-1",
        # Never read the machine's own AWS files, never probe an instance metadata service.
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "RINGFSCK_CACHE_DIR": str(tmp_path / "s3-cache"),
    }
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CA_BUNDLE", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    bucket = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + "-" + uuid.uuid4().hex[:8]
    return S3Sandbox(s3_server, bucket, env)

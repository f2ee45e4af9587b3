"""S3 endpoints, credentials and failures: one clear line and an exit code, retries for what is transient."""

from __future__ import annotations

import json
import urllib.request

import pytest
from click.testing import CliRunner

from _s3 import FaultyProxy, closed_port, tls_files
from conftest import S3Sandbox
from ringfsck.cli import main
from ringfsck.config import S3Settings, Settings, load_settings
from ringfsck.errors import EXIT_INPUT, EXIT_REMOTE, EXIT_USAGE, ConfigError
from ringfsck.s3 import S3, S3Url, endpoint_url


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def one_line_error(result, code: int, *fragments: str) -> str:
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def listing(s3, lab_world):
    """One listkeys file on S3 and how many rows it holds."""
    node = sorted(lab_world.listkeys_dir.iterdir())[0]
    s3.client.upload_file(str(node), s3.bucket, "DATA/listkeys.csv/part-00000")
    rows = sum(1 for line in node.read_text().splitlines() if line and not line.startswith("Use"))
    return s3.url("DATA/listkeys.csv/"), rows


def test_endpoint_and_its_forms(monkeypatch):
    assert endpoint_url(Settings(s3=S3Settings(endpoint="127.0.0.1:8000")), env={}) == "http://127.0.0.1:8000"
    assert endpoint_url(Settings(s3=S3Settings(endpoint="https://s3.example:443/")), env={}) == "https://s3.example:443"
    assert endpoint_url(Settings(), env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}) == "http://127.0.0.1:9"
    assert endpoint_url(Settings(s3=S3Settings(endpoint="127.0.0.1:1")), env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}) == "http://127.0.0.1:1"
    assert endpoint_url(Settings(), env={}) is None
    assert S3(Settings(s3=S3Settings(endpoint="http://user:pw@127.0.0.1:8000"))).where == "http://127.0.0.1:8000"
    settings = load_settings(None, env={"RINGFSCK_S3_ENDPOINT": "127.0.0.1:7480", "RINGFSCK_CACHE_DIR": "/tmp/c"})
    assert endpoint_url(settings, env={}) == "http://127.0.0.1:7480" and settings.cache_dir == "/tmp/c"
    with pytest.raises(ConfigError, match="ca_bundle"):
        _ = S3(Settings(s3=S3Settings(endpoint="https://127.0.0.1:1", ca_bundle="/nowhere/ca.pem"))).client


def test_missing_bucket(s3, tmp_path):
    one_line_error(run("ingest", "listkeys", "s3://no-such-bucket-here/DATA/listkeys.csv/", f"--store={tmp_path / 'store'}"),
                   EXIT_INPUT, "s3://no-such-bucket-here", "no such bucket", s3.endpoint)
    one_line_error(run("sql", "select 1", "--store=s3://no-such-bucket-here/DATA"), EXIT_INPUT, "s3://no-such-bucket-here", "no such bucket")


def test_prefix_with_no_objects(s3, tmp_path):
    store = f"--store={tmp_path / 'store'}"
    one_line_error(run("ingest", "listkeys", s3.url("DATA/listkeys.csv/"), store), EXIT_INPUT, s3.url("DATA/listkeys.csv/"), "no objects")
    s3.client.put_object(Bucket=s3.bucket, Key="DATA/listkeys.csv/_SUCCESS", Body=b"")
    one_line_error(run("ingest", "listkeys", s3.url("DATA/listkeys.csv"), store), EXIT_INPUT, "only markers")
    one_line_error(run("delete", "--manifest", s3.url("DATA/orphans.csv"), store), EXIT_INPUT, s3.url("DATA/orphans.csv"), "no such object")


def test_unreachable_endpoint(s3, monkeypatch, tmp_path):
    port = closed_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    one_line_error(run("ingest", "listkeys", s3.url("DATA/"), f"--store={tmp_path / 'store'}"), EXIT_REMOTE,
                   f"cannot reach the S3 endpoint http://127.0.0.1:{port}", "refused")
    one_line_error(run("report", f"--store={s3.url('DATA')}"), EXIT_REMOTE, f"http://127.0.0.1:{port}")


def test_no_credentials_at_all(s3, monkeypatch, tmp_path):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    one_line_error(run("ingest", "listkeys", s3.url("DATA/"), f"--store={tmp_path / 'store'}"), EXIT_USAGE, "no S3 credentials", "AWS_PROFILE")


def _moto_auth(endpoint: str, value: str) -> None:
    request = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=value.encode(), method="POST",
                                     headers={"Content-Type": "text/plain"})  # a form body would reach moto empty
    urllib.request.urlopen(request, timeout=10).read()


def test_wrong_credentials_are_refused_and_a_profile_is_used(s3, lab_world, monkeypatch, tmp_path):
    import boto3

    # At the bucket's top: moto's signature check trips on a listing prefix holding '/'.
    node = sorted(lab_world.listkeys_dir.iterdir())[0]
    s3.client.upload_file(str(node), s3.bucket, "part-00000")
    url, rows = s3.url("part-00000"), sum(1 for line in node.read_text().splitlines() if line and not line.startswith("Use"))

    iam = boto3.client("iam", endpoint_url=s3.endpoint, region_name="us-east-1")
    user = f"fsck-{s3.bucket[-8:]}"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    (tmp_path / "credentials").write_text(
        f"[fsck]\naws_access_key_id = {key['AccessKeyId']}\naws_secret_access_key = {key['SecretAccessKey']}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    _moto_auth(s3.endpoint, "0")  # from now on moto checks every signature against IAM
    try:
        line = one_line_error(run("ingest", "listkeys", url, f"--store={tmp_path / 'store'}"), EXIT_USAGE,
                              url, "refused the S3 credentials", "InvalidAccessKeyId")
        assert S3Sandbox.SECRET_KEY not in line and S3Sandbox.ACCESS_KEY not in line
        # s3.profile names the profile; it wins over the (wrong) keys in the environment.
        config = tmp_path / "config.yml"
        config.write_text(f"s3:\n  profile: fsck\nstore: {tmp_path / 'store'}\n")
        result = run("ingest", "listkeys", url, f"--config={config}", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["rows"] == rows
        assert key["SecretAccessKey"] not in result.output
    finally:
        _moto_auth(s3.endpoint, "inf")


def test_transient_5xx_dropped_connections_and_a_broken_stream_are_retried(s3, listing, monkeypatch, tmp_path):
    url, rows = listing
    plan = {1: "503", 3: "drop", 6: "503", 9: "drop"}
    with FaultyProxy(s3.endpoint, plan, truncate="/DATA/listkeys.csv/part-00000") as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        result = run("ingest", "listkeys", url, f"--store={s3.url('DATA')}", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["rows"] == rows
        faults = [fault for (_, _, _, fault) in proxy.faults]
        assert faults.count("503") == 2 and faults.count("drop") == 2 and faults.count("truncate") == 1
        # The broken GET was resumed where it stopped (a ranged GET), not restarted.
        reads = [byte_range for method, path, byte_range in proxy.requests if method == "GET" and path.endswith("part-00000")]
        assert len(reads) == 2 and reads[0] is None and reads[1].startswith("bytes=") and reads[1] != "bytes=0-", reads
        check = run("sql", "select count(*) as n from listkeys", f"--store={s3.url('DATA')}", "--format=csv", f"--cache-dir={tmp_path / 'other'}")
        assert check.stdout.split() == ["n", str(rows)]


def test_a_5xx_that_does_not_go_away_is_one_line(s3, monkeypatch, tmp_path):
    with FaultyProxy(s3.endpoint, {n: "503" for n in range(1, 10)}) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        monkeypatch.setenv("RINGFSCK_RETRIES", "1")
        one_line_error(run("sql", "select 1", f"--store={s3.url('DATA')}"), EXIT_REMOTE, s3.url("DATA"), "after 2 attempts", "503")
        assert len(proxy.requests) == 2


def test_https_endpoint_with_a_ca_bundle(s3, listing, monkeypatch, tmp_path):
    url, rows = listing
    bundle, context = tls_files(tmp_path / "tls")
    with FaultyProxy(s3.endpoint, tls=context) as proxy:
        config = tmp_path / "config.yml"
        base = f"store: {tmp_path / 'store'}\ns3:\n  endpoint: {proxy.url}\n"
        config.write_text(base)
        monkeypatch.setenv("RINGFSCK_RETRIES", "0")
        one_line_error(run("ingest", "listkeys", url, f"--config={config}"), EXIT_REMOTE, "TLS", "s3.ca_bundle")
        config.write_text(base + f"  ca_bundle: {bundle}\n")
        result = run("ingest", "listkeys", url, f"--config={config}", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["rows"] == rows
        # AWS_CA_BUNDLE works the same way.
        config.write_text(base)
        monkeypatch.setenv("AWS_CA_BUNDLE", str(bundle))
        assert run("ingest", "listkeys", url, f"--config={config}").exit_code == 0


def test_s3_urls_are_parsed_strictly():
    assert S3Url.parse("s3://bucket/a/b/") == S3Url("bucket", "a/b/")
    assert str(S3Url("bucket", "DATA").join("runs/LATEST")) == "s3://bucket/DATA/runs/LATEST"
    with pytest.raises(ConfigError, match="not an S3 location"):
        S3Url.parse("s3:///key")

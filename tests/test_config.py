"""Configuration layers and the reference's config.yml."""

from __future__ import annotations

import pytest

from ringfsck.config import load_settings
from ringfsck.errors import ConfigError
from ringfsck.keys import ArcSchema

REFERENCE_CONFIG = """\
master: "spark://178.33.63.238:7077"
ring: "DATA"
path: "/fs/spark"
protocol: file
srebuildd_ip: "127.0.0.1"
srebuildd_arc_path: "rebuild/arc-DATA"
srebuildd_arcdata_path: "rebuild/arcdata-DATA"
srebuildd_chord_path: "rebuild/chord-DATA"
retention: 604800
arc_protection: "8+4"
cos_protection: 3
s3:
  access_key: "AKIAEXAMPLE"
  secret_key: "verysecretvalue"
  endpoint: "http://127.0.0.1:8000"
"""


def write(tmp_path, text, name="config.yml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reference_config_is_accepted(tmp_path):
    settings = load_settings(write(tmp_path, REFERENCE_CONFIG), env={})
    assert settings.arc_protection == ArcSchema(8, 4)
    assert settings.cos_protection == 3
    assert settings.srebuildd_base_url == "http://127.0.0.1:81"
    assert settings.chord_path == "rebuild/chord-DATA"
    assert settings.store_location == "/fs/spark/DATA"
    assert settings.s3.endpoint == "http://127.0.0.1:8000"


def test_credentials_are_redacted_from_public_settings(tmp_path):
    settings = load_settings(write(tmp_path, REFERENCE_CONFIG), env={})
    public = repr(settings.public_dict()) + repr(settings)
    assert "verysecretvalue" not in public and "AKIAEXAMPLE" not in public


def test_precedence_cli_over_env_over_file_over_default(tmp_path):
    path = write(tmp_path, "arc_protection: 4+2\ncos_protection: 1\nmin_chunks: 5\n")
    env = {"RINGFSCK_ARC_PROTECTION": "9+3", "RINGFSCK_COS_PROTECTION": "2"}
    settings = load_settings(path, {"arc_protection": "7+5"}, env=env)
    assert settings.arc_protection == ArcSchema(7, 5)  # command line
    assert settings.cos_protection == 2  # environment
    assert settings.min_chunks == 5  # file
    assert settings.retention == 604800  # default


def test_ringfsck_yml_in_working_directory_is_found(tmp_path):
    write(tmp_path, "ring: PROD\n", name="ringfsck.yml")
    assert load_settings(env={}, cwd=tmp_path).ring == "PROD"


def test_s3a_protocol_puts_the_store_in_the_bucket(tmp_path):
    settings = load_settings(write(tmp_path, "protocol: s3a\npath: spark-results\nring: DATA\n"), env={})
    assert settings.store_location == "s3://spark-results/DATA"


@pytest.mark.parametrize(
    "text,message",
    [
        ("retention: soon\n", "retention: expected an integer"),
        ("arc_protection: 8x4\n", "arc_protection: invalid ARC protection"),
        ("cos_protection: 9\n", "cos_protection: invalid COS protection"),
        ("s3: [1, 2]\n", "s3: expected a mapping"),
        ("- just\n- a list\n", "expected a mapping of settings at the top level"),
        ("ring: [unclosed\n", "not valid YAML"),
        ("concurrency: 0\n", "concurrency: expected a positive integer"),
    ],
)
def test_wrong_shapes_are_one_clear_line(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.yml", env={})


def test_bad_environment_value_names_the_environment():
    with pytest.raises(ConfigError, match="environment: min_chunks"):
        load_settings(env={"RINGFSCK_MIN_CHUNKS": "many"})


def test_reference_layout_for_the_store_and_the_inputs(tmp_path):
    s3a = load_settings(write(tmp_path, "ring: DATA\npath: fsck\nprotocol: s3a\n"), env={})
    assert s3a.store_location == "s3://fsck/DATA"
    assert s3a.reference_input("listkeys") == "s3://fsck/DATA/listkeys.csv/"
    assert s3a.reference_input("s3keys") == "s3://fsck/DATA/s3-bucketd/"
    local = load_settings(write(tmp_path, REFERENCE_CONFIG), env={})
    assert local.reference_input("listkeys") == "/fs/spark/DATA/listkeys.csv"
    assert load_settings(None, env={}).reference_input("listkeys") is None
    # --store wins over the reference layout.
    assert load_settings(write(tmp_path, "path: fsck\nprotocol: s3a\n"), {"store": "/data/fsck"}, env={}).store_location == "/data/fsck"


def test_ingest_without_a_path_needs_the_reference_layout(tmp_path):
    from click.testing import CliRunner

    from ringfsck.cli import main

    result = CliRunner().invoke(main, ["ingest", "s3keys", f"--store={tmp_path / 'store'}"])
    assert result.exit_code == 2 and "give the input PATH" in result.output
    local = write(tmp_path, f"path: {tmp_path / 'spark'}\nring: DATA\nstore: {tmp_path / 'store'}\n")
    result = CliRunner().invoke(main, ["ingest", "listkeys", f"--config={local}"])
    assert result.exit_code == 3 and str(tmp_path / "spark" / "DATA" / "listkeys.csv") in result.output

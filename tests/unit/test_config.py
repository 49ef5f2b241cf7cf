"""The lake's config: the shipped files load into typed objects, and every bad input gives one
`ConfigError` that names the file and the key to edit (DESIGN §2)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from edl.config import load_config
from edl.errors import ConfigError, UsageError
from edl.paths import CONFIG_DIR

ACCOUNTS = "account_config.yaml"
TIERS = "tiers.yaml"


@pytest.fixture
def config_dir(tmp_path) -> Path:
    """A private copy of the shipped config folder, to break one key at a time."""
    folder = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, folder)
    return folder


def edit(folder: Path, file: str, change) -> None:
    """Load `file` from `folder`, let `change` mutate it, and write it back."""
    path = folder / file
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def load_error(folder: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(folder)
    return caught.value


# -- the shipped config ----------------------------------------------------------------------------

def test_the_shipped_config_loads_typed():
    config = load_config()
    assert config.bucket_prefix == "sanofi-datalake"
    assert set(config.instances) == {"local", "dev01", "uat", "prod"}
    local = config.instance("local")
    assert local.regions == ("us-east-1", "eu-west-1") and local.default_region == "us-east-1"
    assert local.account_id == "123456789012"
    assert local.is_local and local.endpoint_url.startswith("http://127.0.0.1:")
    assert not config.instance("prod").is_local
    assert set(config.tiers) == {"internal", "restricted", "sensitive"}
    sensitive = config.tier("sensitive")
    assert sensitive.max_grant_days == 90 and sensitive.justification is True
    assert sensitive.approval == "second_person" and sensitive.grantable_levels == ("read", "write")
    assert config.tier("internal").default_read is True
    assert config.tier("internal").approval == "owner_or_admin"  # write grants need the owner
    assert config.person_session_roles == ("AWSReservedSSO_*",)


def test_edl_config_dir_picks_another_folder(config_dir, monkeypatch):
    edit(config_dir, ACCOUNTS, lambda d: d.update(bucket_prefix="acme-lake"))
    monkeypatch.setenv("EDL_CONFIG_DIR", str(config_dir))
    assert load_config().bucket_prefix == "acme-lake"


def test_an_account_id_written_as_a_number_is_read_as_twelve_digits(config_dir):
    edit(config_dir, ACCOUNTS, lambda d: d["instances"]["dev01"].update(account_id=111111111111))
    assert load_config(config_dir).instance("dev01").account_id == "111111111111"


def test_unknown_instance_lists_the_choices():
    with pytest.raises(UsageError) as caught:
        load_config().instance("staging")
    assert "staging" in caught.value.message
    assert "local, dev01, uat, prod" in caught.value.hint


def test_a_region_the_instance_lacks_is_refused_with_its_regions():
    instance = load_config().instance("dev01")
    assert instance.check_region(None) == "us-east-1"
    with pytest.raises(UsageError, match="no region 'eu-west-1'") as caught:
        instance.check_region("eu-west-1")
    assert "us-east-1" in caught.value.hint


# -- one bad key at a time -------------------------------------------------------------------------

def _drop(key):
    return lambda d: d["instances"]["dev01"].pop(key)


def _set(key, value):
    return lambda d: d["instances"]["dev01"].update({key: value})


BAD_ACCOUNTS = {
    "bad person role": (lambda d: d["identity"].update(person_session_roles=["a/b"]),
                        "identity.person_session_roles", "not a role name pattern"),
    "missing key": (_drop("cfn_role_arn"), "instances.dev01.cfn_role_arn", "is missing"),
    "missing regions": (_drop("regions"), "instances.dev01.regions", "is missing"),
    "wrong type": (_set("regions", "us-east-1"), "instances.dev01.regions", "must be a list"),
    "bad region": (_set("regions", ["us-east-1", "europe-1"]), "instances.dev01.regions",
                   "europe-1"),
    "no regions": (_set("regions", []), "instances.dev01.regions", "at least one region"),
    "default not a region": (_set("default_region", "eu-west-1"),
                             "instances.dev01.default_region", "must be one of"),
    "short account id": (_set("account_id", "11111111111"), "instances.dev01.account_id",
                         "12 digits"),
    "account id with letters": (_set("account_id", "11111111111a"), "instances.dev01.account_id",
                                "12 digits"),
    "role not an ARN": (_set("cfn_role_arn", "edl-cloudformation"), "instances.dev01.cfn_role_arn",
                        "IAM role ARN"),
    "role in another account": (_set("cfn_role_arn", "arn:aws:iam::999999999999:role/edl-cfn"),
                                "instances.dev01.cfn_role_arn", "own account"),
    "admin not an ARN": (_set("platform_admin_arn", "admin"), "instances.dev01.platform_admin_arn",
                         "user or role ARN"),
    "endpoint on all interfaces": (_set("endpoint_url", "http://0.0.0.0:4566"),
                                   "instances.dev01.endpoint_url", "127.0.0.1"),
    "endpoint on another host": (_set("endpoint_url", "http://10.1.2.3:4566"),
                                 "instances.dev01.endpoint_url", "127.0.0.1"),
    # The URL's host is evil.example.com; the text before '@' is only user information.
    "endpoint with user info": (_set("endpoint_url", "http://127.0.0.1:4566@evil.example.com/"),
                                "instances.dev01.endpoint_url", "127.0.0.1"),
    "bad instance name": (lambda d: d["instances"].update({"Dev-02": d["instances"]["dev01"]}),
                          "instances.Dev-02", "invalid instance name"),
    "instance not a mapping": (lambda d: d["instances"].update(dev01="x"), "instances.dev01",
                               "must be a mapping"),
    "instances missing": (lambda d: d.pop("instances"), "instances", "is missing"),
    "bad bucket prefix": (lambda d: d.update(bucket_prefix="Sanofi_Lake"), "bucket_prefix",
                          "lowercase"),
}


@pytest.mark.parametrize("change, key, problem", BAD_ACCOUNTS.values(), ids=BAD_ACCOUNTS.keys())
def test_bad_account_config_names_file_and_key(config_dir, change, key, problem):
    edit(config_dir, ACCOUNTS, change)
    error = load_error(config_dir)
    assert ACCOUNTS in error.message
    assert f"'{key}'" in error.message
    assert problem in error.message
    assert str(config_dir / ACCOUNTS) in error.hint


def _tier(name, key, value):
    return lambda d: d["tiers"][name].update({key: value})


BAD_TIERS = {
    "unknown tier": (lambda d: d["tiers"].update(secret=d["tiers"]["internal"]), "tiers.secret",
                     "not a known tier"),
    "missing tier": (lambda d: d["tiers"].pop("sensitive"), "tiers", "missing sensitive"),
    "unknown level": (_tier("restricted", "grantable_levels", ["read", "admin"]),
                      "tiers.restricted.grantable_levels", "admin"),
    "unknown approval": (_tier("restricted", "approval", "manager"), "tiers.restricted.approval",
                         "must be one of"),
    "days not a number": (_tier("sensitive", "max_grant_days", "ninety"),
                          "tiers.sensitive.max_grant_days", "must be a int"),
    "days not positive": (_tier("sensitive", "max_grant_days", 0),
                          "tiers.sensitive.max_grant_days", "positive"),
    "flag not a bool": (_tier("internal", "default_read", "yes please"),
                        "tiers.internal.default_read", "must be a bool"),
    "missing flag": (lambda d: d["tiers"]["internal"].pop("justification"),
                     "tiers.internal.justification", "is missing"),
}


@pytest.mark.parametrize("change, key, problem", BAD_TIERS.values(), ids=BAD_TIERS.keys())
def test_bad_tiers_config_names_file_and_key(config_dir, change, key, problem):
    edit(config_dir, TIERS, change)
    error = load_error(config_dir)
    assert TIERS in error.message
    assert f"'{key}'" in error.message
    assert problem in error.message


def test_a_boolean_is_not_a_number_of_days(config_dir):
    edit(config_dir, TIERS, _tier("sensitive", "max_grant_days", True))
    assert "'tiers.sensitive.max_grant_days'" in load_error(config_dir).message


def test_invalid_yaml_names_the_file_and_line(config_dir):
    path = config_dir / ACCOUNTS
    lines = path.read_text().splitlines()
    # A flow sequence that never closes, on a line we know.
    lines.append("broken: [a, b")
    lines.append("other: 1")
    path.write_text("\n".join(lines) + "\n")
    error = load_error(config_dir)
    assert str(path) in error.message
    assert "not valid YAML" in error.message
    line = int(error.message.split(" line ")[1].split(":")[0])
    assert len(lines) - 1 <= line <= len(lines)  # the open bracket's line or the next


def test_a_file_that_is_not_a_mapping_is_refused(config_dir):
    (config_dir / TIERS).write_text("- internal\n- restricted\n")
    error = load_error(config_dir)
    assert str(config_dir / TIERS) in error.message and "mapping" in error.message


@pytest.mark.parametrize("file", [ACCOUNTS, TIERS])
def test_a_missing_file_is_named(config_dir, file):
    (config_dir / file).unlink()
    error = load_error(config_dir)
    assert str(config_dir / file) in error.message and "does not exist" in error.message


def test_bucket_names_that_aws_would_refuse_are_refused_at_load(config_dir):
    """S3 bucket names are at most 63 characters. A prefix the loader accepts (up to 31
    characters) with an instance name it accepts (up to 16) can make the drop bucket
    `<prefix>-drop-<instance>-restricted-<region>` longer than that; the loader is where the
    user should hear it, naming the key, not CloudFormation halfway through a deploy."""
    def change(d):
        d["bucket_prefix"] = "acme-enterprise-datalake"  # 24 characters
        d["instances"]["development01"] = d["instances"].pop("dev01")
        d["instances"]["development01"]["regions"] = ["ap-southeast-2"]
        d["instances"]["development01"]["default_region"] = "ap-southeast-2"

    edit(config_dir, ACCOUNTS, change)
    error = load_error(config_dir)
    assert ACCOUNTS in error.message
    assert "bucket_prefix" in error.message or "development01" in error.message

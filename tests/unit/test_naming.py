"""Every name EDL gives to things in AWS (DESIGN §1): the dataset rule, buckets, roles, stacks."""

from __future__ import annotations

import re

import pytest

from edl import naming
from edl.config import load_config
from edl.errors import NamingError, UsageError

CONFIG = load_config()
# S3: 3-63 characters, lowercase letters, digits, '.' and '-', starting and ending alphanumeric.
S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# CloudFormation: a letter, then letters, digits and '-', at most 128 characters.
STACK = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
# IAM role names: at most 64 characters of [\w+=,.@-].
ROLE = re.compile(r"^[\w+=,.@-]{1,64}$")


# -- dataset names ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["abc", "clinical_trials", "trial2024_v2", "a_b", "x" * 63,
                                  "a" + "9" * 62])
def test_valid_dataset_names(name):
    assert naming.validate_dataset_name(name) == name


@pytest.mark.parametrize("name", [
    "Clinical_trials",   # uppercase
    "clinical-trials",   # dash
    "ab",                # too short
    "x" * 64,            # too long
    "2024_trials",       # leading digit
    "_trials",           # leading underscore
    "clinical trials",   # space
    "clinical.trials",   # dot
    "essai_clinique_é",  # not ASCII
    "",
])
def test_invalid_dataset_names_are_refused_with_the_rule(name):
    with pytest.raises(NamingError) as caught:
        naming.validate_dataset_name(name)
    assert isinstance(caught.value, UsageError) and caught.value.exit_code == 2
    assert repr(name) in caught.value.message
    assert "3-63 lowercase letters, digits and '_', starting with a letter" in caught.value.hint


def test_a_trailing_newline_is_not_part_of_a_valid_name():
    """`$` in a Python regex also matches before a final newline, so 'abc\\n' would pass and
    reach S3 prefixes, IAM policies and stack names."""
    with pytest.raises(NamingError):
        naming.validate_dataset_name("clinical_trials\n")
    with pytest.raises(NamingError):
        naming.validate_instance_name("dev01\n")


@pytest.mark.parametrize("name", ["local", "dev01", "uat", "prod", "a" * 16])
def test_valid_instance_names(name):
    assert naming.validate_instance_name(name) == name


@pytest.mark.parametrize("name", ["Dev01", "dev-01", "d", "a" * 17, "1dev", "dev_01"])
def test_invalid_instance_names(name):
    with pytest.raises(NamingError, match="invalid instance name"):
        naming.validate_instance_name(name)


def test_tiers_are_the_three_of_the_design():
    assert naming.TIERS == ("internal", "restricted", "sensitive")
    for tier in naming.TIERS:
        assert naming.validate_tier(tier) == tier
    with pytest.raises(NamingError) as caught:
        naming.validate_tier("secret")
    assert "internal, restricted, sensitive" in caught.value.hint


# -- buckets ---------------------------------------------------------------------------------------

def test_bucket_names_follow_the_design():
    assert naming.data_bucket("sanofi-datalake", "prod", "sensitive", "eu-west-1") == \
        "sanofi-datalake-prod-sensitive-eu-west-1"
    assert naming.drop_bucket("sanofi-datalake", "prod", "sensitive", "eu-west-1") == \
        "sanofi-datalake-drop-prod-sensitive-eu-west-1"


def test_every_shipped_bucket_is_a_valid_distinct_s3_name():
    names = []
    for instance in CONFIG.instances.values():
        for region in instance.regions:
            names.append(naming.artifacts_bucket(CONFIG.bucket_prefix, instance.name, region))
            names.append(naming.logs_bucket(CONFIG.bucket_prefix, instance.name, region))
            for tier in naming.TIERS:
                names.append(naming.data_bucket(CONFIG.bucket_prefix, instance.name, tier, region))
                names.append(naming.drop_bucket(CONFIG.bucket_prefix, instance.name, tier, region))
    assert all(S3_BUCKET.match(n) for n in names), [n for n in names if not S3_BUCKET.match(n)]
    assert len(set(names)) == len(names)


def test_the_longest_allowed_instance_still_fits_s3_with_the_default_prefix():
    bucket = naming.drop_bucket("sanofi-datalake", "a" * 16, "restricted", "ap-southeast-2")
    assert S3_BUCKET.match(bucket), (bucket, len(bucket))


# -- roles -----------------------------------------------------------------------------------------

def test_short_role_names_are_readable():
    assert naming.dataset_role("prod", "clinical_trials", "read") == "edl-prod-clinical_trials-read"
    assert naming.default_reader_role("prod") == "edl-prod-internal-reader"


@pytest.mark.parametrize("instance", ["uat", "a" * 16])
def test_role_names_stay_within_64_characters_and_distinct(instance):
    datasets = ["x" * 63, "x" * 62 + "y", "x" * 40 + "_one", "x" * 40 + "_two",
                "clinical_trials", "y" * 44]
    roles = [naming.dataset_role(instance, d, level)
             for d in datasets for level in naming.ACCESS_LEVELS]
    assert all(ROLE.match(r) for r in roles), [r for r in roles if not ROLE.match(r)]
    assert len(set(roles)) == len(roles)
    assert all(r.startswith(f"edl-{instance}-") for r in roles)
    assert all(r.endswith(("-read", "-write")) for r in roles)


def test_shortened_role_names_are_stable():
    first = naming.dataset_role("a" * 16, "x" * 63, "write")
    assert first == naming.dataset_role("a" * 16, "x" * 63, "write")
    assert len(first) == 64


# -- stacks ----------------------------------------------------------------------------------------

def test_stack_names_have_no_underscore():
    name = naming.stack_name("prod", "dataset", "clinical_trials_v2")
    assert name == "edl-prod-dataset-clinical-trials-v2"
    assert STACK.match(name)


def test_the_longest_dataset_stack_name_is_valid():
    name = naming.stack_name("a" * 16, "dataset", "x_" * 31 + "x")
    assert STACK.match(name) and "_" not in name


def test_other_names():
    assert naming.kms_alias("prod", "restricted") == "alias/edl-prod-restricted"
    assert naming.table_name("prod", "updates") == "edl-prod-updates"
    assert naming.glue_database("prod", "internal") == "edl_prod_internal"
    with pytest.raises(ValueError):
        naming.table_name("prod", "users")


@pytest.mark.parametrize("name", sorted(naming.RESERVED_DATASET_NAMES))
def test_a_dataset_named_like_an_area_of_the_buckets_is_refused(name):
    with pytest.raises(NamingError, match="reserved") as err:
        naming.validate_dataset_name(name)
    assert "choose another name" in err.value.hint


def test_a_datasets_drop_areas_never_hold_another_datasets_files():
    uploads, own = naming.drop_areas("sales")
    assert (uploads, own) == ("uploads/sales/", "sales/")
    other = naming.drop_areas("sales_eu")
    assert not any(key.startswith((uploads, own)) for key in other)
    assert not naming.drop_areas("uploads_x")[1].startswith(uploads)

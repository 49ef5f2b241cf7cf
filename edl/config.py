"""The lake's configuration, loaded into typed, frozen objects and validated at load.

`account_config.yaml` describes the instances and `tiers.yaml` the tier policies; both live in
`edl/core_resources/config/` (or a folder named by `$EDL_CONFIG_DIR`). A bad file gives one
`ConfigError` that names the file and the key, so the user knows exactly what to edit.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from edl import naming
from edl.errors import ConfigError, UsageError
from edl.paths import CONFIG_DIR

_REGION_RE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_ACCOUNT_RE = re.compile(r"^\d{12}$")
_ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_APPROVALS = ("none", "owner_or_admin", "second_person")


@dataclass(frozen=True)
class Instance:
    name: str
    description: str
    account_id: str
    regions: tuple[str, ...]
    default_region: str
    cfn_role_arn: str
    platform_admin_arn: str
    endpoint_url: str | None = None

    @property
    def is_local(self) -> bool:
        return self.endpoint_url is not None

    def check_region(self, region: str | None) -> str:
        """The region to use: the one asked for, if the instance has it, else the default."""
        if region is None:
            return self.default_region
        if region not in self.regions:
            raise UsageError(
                f"instance {self.name!r} has no region {region!r}",
                hint=f"choose one of: {', '.join(self.regions)}",
            )
        return region


@dataclass(frozen=True)
class TierPolicy:
    name: str
    description: str
    default_read: bool
    grantable_levels: tuple[str, ...]
    approval: str
    justification: bool
    max_grant_days: int | None


@dataclass(frozen=True)
class LakeConfig:
    bucket_prefix: str
    instances: dict[str, Instance]
    tiers: dict[str, TierPolicy]
    config_dir: Path
    # Roles whose session names name a person (glob patterns; account_config.yaml `identity`).
    person_session_roles: tuple[str, ...] = ()

    def instance(self, name: str) -> Instance:
        try:
            return self.instances[name]
        except KeyError:
            raise UsageError(
                f"unknown instance {name!r}",
                hint=f"choose one of: {', '.join(self.instances)} "
                f"(defined in {self.config_dir / 'account_config.yaml'})",
            ) from None

    def tier(self, name: str) -> TierPolicy:
        naming.validate_tier(name)
        return self.tiers[name]


class _Reader:
    """Reads one YAML file and checks keys, naming the file and the key path in every error."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}{where}: not valid YAML ({exc.__class__.__name__})") from None
        if not isinstance(self.data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path.name}: key '{key}' {problem}", hint=f"edit {self.path}")

    def get(self, mapping: dict, key: str, where: str, kind: type | tuple, *, required=True,
            default: Any = None) -> Any:
        path = f"{where}.{key}" if where else key
        if key not in mapping or mapping[key] is None:
            if required:
                raise self.fail(path, "is missing")
            return default
        value = mapping[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise self.fail(path, f"must be a {names}, not {type(value).__name__}")
        return value

    def check(self, ok: bool, key: str, problem: str) -> None:
        if not ok:
            raise self.fail(key, problem)


def _load_instance(r: _Reader, name: str, raw: Any) -> Instance:
    where = f"instances.{name}"
    r.check(isinstance(raw, dict), where, "must be a mapping")
    try:
        naming.validate_instance_name(name)
    except UsageError as exc:
        raise r.fail(where, exc.message) from None
    account = str(r.get(raw, "account_id", where, (str, int)))
    r.check(bool(_ACCOUNT_RE.fullmatch(account)), f"{where}.account_id", "must be 12 digits")
    regions = r.get(raw, "regions", where, list)
    r.check(bool(regions), f"{where}.regions", "must list at least one region")
    for region in regions:
        r.check(isinstance(region, str) and bool(_REGION_RE.fullmatch(region)), f"{where}.regions",
                f"has an invalid region {region!r}")
    default_region = r.get(raw, "default_region", where, str)
    r.check(default_region in regions, f"{where}.default_region",
            f"({default_region}) must be one of the instance's regions")
    role = r.get(raw, "cfn_role_arn", where, str)
    r.check(bool(_ROLE_ARN_RE.fullmatch(role)), f"{where}.cfn_role_arn", "must be an IAM role ARN")
    r.check(role.split(":")[4] == account, f"{where}.cfn_role_arn",
            "must be a role in the instance's own account")
    admin = r.get(raw, "platform_admin_arn", where, str)
    r.check(bool(re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:(user|role)/[\w+=,.@/-]+", admin)),
            f"{where}.platform_admin_arn", "must be an IAM user or role ARN")
    endpoint = r.get(raw, "endpoint_url", where, str, required=False)
    if endpoint is not None:
        url = urlparse(endpoint)
        r.check(url.scheme == "http" and url.hostname in ("127.0.0.1", "localhost")
                and url.username is None and url.password is None and _has_port(url),
                f"{where}.endpoint_url",
                "must be http://127.0.0.1:PORT (the local cloud listens nowhere else)")
    return Instance(
        name=name,
        description=r.get(raw, "description", where, str, required=False, default=""),
        account_id=account,
        regions=tuple(regions),
        default_region=default_region,
        cfn_role_arn=role,
        platform_admin_arn=admin,
        endpoint_url=endpoint,
    )


def _has_port(url) -> bool:
    try:
        return url.port is not None
    except ValueError:
        return False


def _check_bucket_names(r: _Reader, prefix: str, instance: Instance) -> None:
    """S3 allows 63 characters: refuse at load what CloudFormation would refuse mid-deploy."""
    for region in instance.regions:
        longest = max((naming.drop_bucket(prefix, instance.name, tier, region) for tier in naming.TIERS),
                      key=len)
        for name in (longest, naming.artifacts_bucket(prefix, instance.name, region),
                     naming.logs_bucket(prefix, instance.name, region),
                     naming.athena_results_bucket(prefix, instance.name, region)):
            r.check(len(name) <= 63, f"instances.{instance.name}",
                    f"makes bucket name {name} ({len(name)} characters), over S3's 63: "
                    "shorten the instance name or bucket_prefix")


def _load_tier(r: _Reader, name: str, raw: Any) -> TierPolicy:
    where = f"tiers.{name}"
    r.check(name in naming.TIERS, where, f"is not a known tier ({', '.join(naming.TIERS)})")
    r.check(isinstance(raw, dict), where, "must be a mapping")
    levels = r.get(raw, "grantable_levels", where, list)
    for level in levels:
        r.check(level in naming.ACCESS_LEVELS, f"{where}.grantable_levels",
                f"has an unknown level {level!r} ({', '.join(naming.ACCESS_LEVELS)})")
    approval = r.get(raw, "approval", where, str)
    r.check(approval in _APPROVALS, f"{where}.approval", f"must be one of {', '.join(_APPROVALS)}")
    max_days = r.get(raw, "max_grant_days", where, int, required=False)
    r.check(max_days is None or max_days > 0, f"{where}.max_grant_days", "must be positive")
    return TierPolicy(
        name=name,
        description=r.get(raw, "description", where, str, required=False, default=""),
        default_read=r.get(raw, "default_read", where, bool),
        grantable_levels=tuple(levels),
        approval=approval,
        justification=r.get(raw, "justification", where, bool),
        max_grant_days=max_days,
    )


def load_config(config_dir: Path | None = None) -> LakeConfig:
    """Load and validate `account_config.yaml` and `tiers.yaml` from `config_dir`."""
    config_dir = Path(config_dir or os.environ.get("EDL_CONFIG_DIR") or CONFIG_DIR)
    accounts = _Reader(config_dir / "account_config.yaml")
    prefix = accounts.get(accounts.data, "bucket_prefix", "", str, required=False,
                          default="sanofi-datalake")
    accounts.check(bool(re.fullmatch(r"[a-z0-9][a-z0-9-]{2,30}", prefix)), "bucket_prefix",
                   "must be 3-31 lowercase letters, digits and '-'")
    identity = accounts.get(accounts.data, "identity", "", dict, required=False, default={})
    person_roles = accounts.get(identity, "person_session_roles", "identity", list,
                                required=False, default=[])
    for pattern in person_roles:
        accounts.check(isinstance(pattern, str) and bool(re.fullmatch(r"[\w+=,.@*?-]{1,64}", pattern)),
                       "identity.person_session_roles",
                       f"has {pattern!r}, which is not a role name pattern (letters, digits, "
                       "+=,.@_- and the wildcards * and ?)")
    raw_instances = accounts.get(accounts.data, "instances", "", dict)
    instances = {name: _load_instance(accounts, name, raw) for name, raw in raw_instances.items()}
    for instance in instances.values():
        _check_bucket_names(accounts, prefix, instance)

    tiers_file = _Reader(config_dir / "tiers.yaml")
    raw_tiers = tiers_file.get(tiers_file.data, "tiers", "", dict)
    tiers = {name: _load_tier(tiers_file, name, raw) for name, raw in raw_tiers.items()}
    missing = [t for t in naming.TIERS if t not in tiers]
    tiers_file.check(not missing, "tiers", f"is missing {', '.join(missing)}")
    return LakeConfig(bucket_prefix=prefix, instances=instances, tiers=tiers, config_dir=config_dir,
                      person_session_roles=tuple(person_roles))


@lru_cache(maxsize=4)
def _cached(config_dir: str) -> LakeConfig:
    return load_config(Path(config_dir))


def get_config() -> LakeConfig:
    """The config of this process (cached; `$EDL_CONFIG_DIR` picks another folder)."""
    return _cached(os.environ.get("EDL_CONFIG_DIR") or str(CONFIG_DIR))

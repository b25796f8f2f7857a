"""The lock files (pip-tools, every file hashed) agree with pyproject.toml, and this environment
was installed from them: the same versions on every machine. Refresh them with the command in
the README's "Dependencies" section whenever pyproject.toml's dependencies change."""

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
APP_LOCK, TEST_LOCK = ROOT / "requirements.txt", ROOT / "requirements-test.txt"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def pins(lock: Path) -> dict[str, str]:
    """Each locked package and its version; every pin must carry at least one sha256 hash."""
    text = lock.read_text()
    found = {}
    for entry in re.split(r"\n(?=[A-Za-z0-9])", text):
        if match := PIN.match(entry):
            assert "--hash=sha256:" in entry, f"{lock.name}: {match[1]} has no hash"
            found[canonicalize_name(match[1])] = match[2]
    assert found, f"{lock.name} pins nothing"
    return found


def wanted(*extras: str) -> list[Requirement]:
    lines = PROJECT["dependencies"] + [
        r for e in extras for r in PROJECT["optional-dependencies"][e]
    ]
    return [r for r in map(Requirement, lines) if r.marker is None or r.marker.evaluate()]


@pytest.mark.parametrize(("lock", "extras"), [(APP_LOCK, ()), (TEST_LOCK, ("test",))])
def test_every_dependency_in_pyproject_is_locked_at_a_version_it_allows(lock, extras):
    locked = pins(lock)
    for requirement in wanted(*extras):
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement} is not in {lock.name}: refresh the lock"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"{lock.name} pins {name}=={locked[name]}, outside {requirement}: refresh the lock"
        )


def test_the_app_and_the_tests_lock_the_same_versions():
    app, test = pins(APP_LOCK), pins(TEST_LOCK)
    assert {name: test.get(name) for name in app} == app


def test_this_environment_was_installed_from_the_lock():
    """Installed by the README's commands, every package is at its locked version."""
    wrong = {}
    for name, pinned in pins(TEST_LOCK).items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        if installed != pinned:
            wrong[name] = (pinned, installed)
    assert not wrong, f"locked vs installed: {wrong}; install with the README's commands"

"""The system packages are named once: the README's set-up line and CI both read the same file."""

from pathlib import Path

ROOT = Path(__file__).parents[2]


def packages() -> list[str]:
    lines = (ROOT / "system-packages.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_the_list_names_every_server_and_tool_the_tests_start():
    assert {"postgresql", "redis-server", "chromium", "fonts-wqy-microhei", "docker-compose"} <= (
        set(packages())
    )


def test_the_readme_and_ci_install_from_the_list_before_the_test_command():
    readme = (ROOT / "README.md").read_text()
    setup = readme[: readme.index("test-command")]
    assert "apt-get install -y $(grep -v '^#' system-packages.txt)" in setup
    assert "system-packages.txt" in (ROOT / ".ci" / "run").read_text()

"""The deployment test's report: measured numbers in pytest's summary, and the containers' logs
attached to any failing test that ran against the compose stack."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

REPORT: dict[str, str] = {}
STACK: dict[str, object] = {}  # "stack": the running ComposeStack, for the logs of a failure


@pytest.fixture(scope="session")
def deploy_report() -> dict[str, str]:
    """What the deployment test measured (image sizes, build and start times), printed at the end."""
    return REPORT


@pytest.fixture(scope="session")
def deploy_stack_holder() -> dict[str, object]:
    """Where the module's stack fixture puts the running stack while it runs."""
    return STACK


@pytest.fixture(scope="session")
def progress(request):
    """A line on the terminal as the slow steps go (pytest captures output otherwise): a cold run
    builds images for minutes."""
    capman = request.config.pluginmanager.getplugin("capturemanager")

    def say(msg: str) -> None:
        with capman.global_and_fixture_disabled():
            print(f"[deploy] {msg}", flush=True)

    return say


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    stack = STACK.get("stack")
    if report.failed and stack is not None and str(item.path).startswith(str(HERE)):
        try:
            report.sections.append(("containers' logs (last lines)", stack.logs()))
        except Exception as exc:  # the engine itself may be what failed
            report.sections.append(("containers' logs", f"unavailable: {exc}"))


def pytest_terminal_summary(terminalreporter):
    if REPORT:
        terminalreporter.section("deployment test: measured")
        for key, value in REPORT.items():
            terminalreporter.write_line(f"{key}: {value}")

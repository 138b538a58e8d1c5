"""docker-compose.yml run the way a user runs it, for the deployment test.

Compose stays the user's command line: `docker compose` (the v2 plugin) when the docker CLI has it,
else Debian's `docker-compose` (v1.29), both reading the real compose file from the repository
root with a generated env file. Everything the test looks at inside the engine (containers,
health, `inspect` facts, logs, what is left after `down`) is read through the Docker SDK, by the
project's compose labels.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from .docker_engine import Engine

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


def compose_command(env: dict[str, str]) -> list[str] | None:
    """`docker compose` when the plugin answers, else `docker-compose`, else None."""
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, env=env,
                               timeout=30)
        if probe.returncode == 0:
            return [docker, "compose"]
    v1 = shutil.which("docker-compose")
    return [v1] if v1 else None


class ComposeError(RuntimeError):
    pass


class ComposeStack:
    """One compose project of the repository's docker-compose.yml on `engine`."""

    def __init__(self, root: Path, engine: Engine, env_file: Path, project: str):
        self.root = root
        self.engine = engine
        self.env_file = env_file
        self.project = project  # letters and digits only: v1 and v2 name it the same way
        self.client = engine.client()
        self.cli = compose_command(engine.env())
        if self.cli is None:
            raise ComposeError("neither `docker compose` (v2 plugin) nor `docker-compose` (Debian package) is installed")

    # ------------------------------------------------------------------ the user's commands
    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        cmd = [*self.cli, "--project-name", self.project, "--project-directory", str(self.root),
               "--file", str(self.root / "docker-compose.yml"), "--env-file", str(self.env_file), *args]
        proc = subprocess.run(cmd, cwd=self.root, env=self.engine.env(), capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise ComposeError(f"{' '.join(cmd[len(self.cli):])} failed ({proc.returncode}):\n"
                               f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
        return proc

    # ------------------------------------------------------------------ what the engine says
    def containers(self, service: str | None = None, *, all: bool = False) -> list:
        labels = [f"{PROJECT_LABEL}={self.project}"]
        if service:
            labels.append(f"{SERVICE_LABEL}={service}")
        return self.client.containers.list(all=all, filters={"label": labels})

    def container(self, service: str):
        found = self.containers(service, all=True)
        if len(found) != 1:
            raise ComposeError(f"{len(found)} containers for service {service}")
        return found[0]

    def health(self, service: str) -> str:
        """`healthy`, `starting`, `unhealthy`, or the container's state when that says more
        (`restarting`: a crash loop under the restart policy; `exited`, `dead`)."""
        state = self.container(service).attrs["State"]
        if state["Status"] in ("restarting", "exited", "dead"):
            return state["Status"]
        return state.get("Health", {}).get("Status") or state["Status"]

    def wait_healthy(self, services: Iterable[str], timeout: float) -> dict[str, float]:
        """Seconds until each service's healthcheck passed; raises with the states and logs when
        one does not within `timeout` (or its container stopped)."""
        started, waiting, took = time.monotonic(), set(services), {}
        while waiting:
            for service in sorted(waiting):
                state = self.health(service)
                if state == "healthy":
                    took[service] = time.monotonic() - started
                    waiting.discard(service)
                elif state in ("exited", "dead", "restarting", "unhealthy"):
                    raise ComposeError(f"{service} is {state}:\n{self.logs(service)}")
            if waiting and time.monotonic() - started > timeout:
                states = {s: self.health(s) for s in waiting}
                raise ComposeError(f"not healthy after {timeout:.0f} s: {states}\n" +
                                   "\n".join(self.logs(s) for s in waiting))
            if waiting:
                time.sleep(1)
        return took

    def logs(self, service: str | None = None, tail: int = 60) -> str:
        """The last lines of each container's log (of one service, or of the project)."""
        parts = []
        for c in self.containers(service, all=True):
            text = c.logs(tail=tail, timestamps=False).decode(errors="replace").rstrip()
            parts.append(f"----- {c.name} ({c.status}) -----\n{text}")
        return "\n".join(parts)

    def leftovers(self) -> dict[str, list[str]]:
        """What of the project is still in the engine (after `down -v` there must be nothing)."""
        label = {"label": f"{PROJECT_LABEL}={self.project}"}
        return {
            "containers": [c.name for c in self.client.containers.list(all=True, filters=label)],
            "networks": [n.name for n in self.client.networks.list(filters=label)],
            "volumes": [v.name for v in self.client.volumes.list(filters=label)],
        }

    def close(self) -> None:
        self.client.close()

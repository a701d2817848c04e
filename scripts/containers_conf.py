"""Add the podman settings the lab needs to containers.conf, only where they are missing.

Existing settings are never changed: a different value is reported so that the operator
decides. Standard library only, because it runs before the virtualenv exists.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

REQUIRED: dict[str, dict[str, str]] = {
    # crun fails here (hybrid cgroups, setrlimit refused); runc works.
    "engine": {"runtime": '"runc"'},
    # Raising nofile/nproc beyond the host's limits is refused: set them explicitly.
    "containers": {"default_ulimits": '["nofile=1024:1024", "nproc=1024:1024"]'},
}


def ensure(path: Path) -> list[str]:
    """Return the messages describing what was added or left alone."""
    text = path.read_text() if path.exists() else ""
    try:
        current = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SystemExit(
            f"setup: error: {path} is not valid TOML ({exc}); fix it and run again"
        ) from None
    lines = text.splitlines()
    messages: list[str] = []
    for section, settings in REQUIRED.items():
        for key, value in settings.items():
            have = current.get(section, {}).get(key)
            if have is not None:
                wanted = tomllib.loads(f"v = {value}")["v"]
                if have != wanted:
                    messages.append(
                        f"{path}: [{section}] {key} is {have!r}; the lab needs {value} "
                        "(left as is: change it by hand if containers fail to start)"
                    )
                else:
                    messages.append(f"{path}: [{section}] {key} already set")
                continue
            header = f"[{section}]"
            entry = f"{key} = {value}"
            if header in (line.strip() for line in lines):
                at = next(i for i, line in enumerate(lines) if line.strip() == header)
                lines.insert(at + 1, entry)
            else:
                lines += ["", header, entry]
            messages.append(f"{path}: added [{section}] {entry}")
    new = "\n".join(lines).lstrip("\n") + "\n"
    if new != (text if text.endswith("\n") else text + "\n"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(new)
    return messages


if __name__ == "__main__":
    for message in ensure(Path(sys.argv[1])):
        print(f"setup: {message}")

"""The local lab: a tool beside the product (`techops lab`), which nothing else imports.

`images` builds the Debian base images, `hosts` creates the systemd containers and writes
the lab inventory, `podman` runs podman for both.
"""

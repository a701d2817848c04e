#!/usr/bin/python
# Copyright: (c) 2026, TechOps
# SPDX-License-Identifier: LicenseRef-Proprietary
"""Per-user TOTP secret files for pam_google_authenticator, generated on the host."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: totp_secret
short_description: Manage a pam_google_authenticator TOTP secret file on the host
description:
  - Creates a TOTP (RFC 6238) secret file in the format pam_google_authenticator reads,
    generated on the managed host from the operating system's random source.
  - An existing secret is never replaced unless O(rotate=true). Re-running the module keeps
    the secret, the scratch codes and the state the PAM module keeps in the file (codes
    already used, rate-limit timestamps).
  - The option lines (window size, rate limit, code reuse) are brought to the requested
    values without touching the secret.
  - The secret and the enrolment URI are returned only when the secret was created or
    rotated, so that the play can hand them to the user once. Run the task with
    C(no_log) set, since the result holds the secret then.
version_added: "0.1.0"
author:
  - TechOps (!UNKNOWN)
options:
  path:
    description: The secret file, e.g. C(/var/lib/techops-mfa/alice).
    type: path
    required: true
  state:
    description: V(absent) removes the file (revocation).
    type: str
    choices: [present, absent]
    default: present
  owner:
    description:
      - Owner of the file. pam_google_authenticator refuses files not owned by the user it
        reads them as (its C(user=) option), or readable by others.
    type: str
    default: root
  group:
    description: Group of the file.
    type: str
    default: root
  rotate:
    description: Replace the secret and the scratch codes with new ones.
    type: bool
    default: false
  window_size:
    description:
      - Number of codes accepted around the current one (C(WINDOW_SIZE)).
      - 3 accepts the previous, the current and the next code.
    type: int
    default: 3
  rate_limit_attempts:
    description: Logins allowed per O(rate_limit_seconds) (C(RATE_LIMIT)); 0 disables rate limiting.
    type: int
    default: 3
  rate_limit_seconds:
    description: Length of the rate-limit period, in seconds.
    type: int
    default: 30
  disallow_reuse:
    description: Refuse a code that was already used (C(DISALLOW_REUSE)).
    type: bool
    default: true
  scratch_codes:
    description: Number of single-use emergency scratch codes written with a new secret (0 to 10).
    type: int
    default: 5
  issuer:
    description: Issuer shown by authenticator apps, in the otpauth URI.
    type: str
    default: TechOps
  label:
    description: Account label in the otpauth URI; the file name when not given.
    type: str
attributes:
  check_mode:
    support: full
    description: Reports what would change; writes nothing.
  diff_mode:
    support: partial
    description: Shows the option lines; never the secret or the scratch codes.
notes:
  - The time step is 30 seconds with 6-digit SHA-1 codes, what authenticator apps and
    pam_google_authenticator use by default.
seealso:
  - name: RFC 6238
    description: TOTP, Time-Based One-Time Password Algorithm.
    link: https://www.rfc-editor.org/rfc/rfc6238
"""

EXAMPLES = r"""
- name: Make sure alice has a TOTP secret (the secret is returned only when new)
  techops.ops.totp_secret:
    path: /var/lib/techops-mfa/alice
    label: alice@bastion1
    window_size: 3
  register: alice_totp
  no_log: true

- name: Rotate bob's secret after a lost phone
  techops.ops.totp_secret:
    path: /var/lib/techops-mfa/bob
    rotate: true
  no_log: true

- name: Revoke carol's second factor
  techops.ops.totp_secret:
    path: /var/lib/techops-mfa/carol
    state: absent
"""

RETURN = r"""
path:
  description: The secret file.
  returned: always
  type: str
  sample: /var/lib/techops-mfa/alice
enrolled:
  description: Whether the file holds a secret after the task.
  returned: always
  type: bool
  sample: true
created:
  description: Whether a new secret was generated (first enrolment or rotation).
  returned: always
  type: bool
  sample: false
secret:
  description: The base32 secret. Returned only when created; run the task with C(no_log).
  returned: when created
  type: str
  sample: JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP
uri:
  description: The otpauth:// URI for authenticator apps. Returned only when created.
  returned: when created
  type: str
  sample: otpauth://totp/TechOps:alice?secret=JBSWY3DPEHPK3PXP&issuer=TechOps&algorithm=SHA1&digits=6&period=30
scratch_codes:
  description: The emergency scratch codes. Returned only when created.
  returned: when created
  type: list
  elements: str
  sample: ["12345678"]
options:
  description: The option lines of the file after the task.
  returned: always
  type: list
  elements: str
  sample: ['" RATE_LIMIT 3 30', '" WINDOW_SIZE 3', '" DISALLOW_REUSE', '" TOTP_AUTH']
"""

import base64  # noqa: E402 - Ansible module layout
import grp  # noqa: E402 - Ansible module layout
import os  # noqa: E402 - Ansible module layout
import pwd  # noqa: E402 - Ansible module layout
import secrets  # noqa: E402 - Ansible module layout
import tempfile  # noqa: E402 - Ansible module layout
from urllib.parse import quote, urlencode  # noqa: E402 - Ansible module layout

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - Ansible module layout

SECRET_BYTES = 20  # 160 bits, as RFC 4226 recommends
OPTION_PREFIX = '" '


def desired_options(params):
    """The option lines the file should carry, in pam_google_authenticator's spelling."""
    lines = []
    if params["rate_limit_attempts"] > 0:
        lines.append(f'" RATE_LIMIT {params["rate_limit_attempts"]} {params["rate_limit_seconds"]}')
    lines.append(f'" WINDOW_SIZE {params["window_size"]}')
    if params["disallow_reuse"]:
        lines.append('" DISALLOW_REUSE')
    lines.append('" TOTP_AUTH')
    return lines


def option_key(line):
    """What identifies an option line regardless of the state the PAM module appends.

    RATE_LIMIT carries the timestamps of recent logins after its two settings and
    DISALLOW_REUSE the time steps of used codes: those belong to the PAM module.
    """
    words = line[len(OPTION_PREFIX) :].split()
    if not words:
        return ""
    if words[0] == "RATE_LIMIT":
        return " ".join(words[:3])
    if words[0] == "DISALLOW_REUSE":
        return "DISALLOW_REUSE"
    return " ".join(words)


def parse(content):
    """Split a secret file into secret, option lines and scratch codes."""
    lines = content.splitlines()
    secret = lines[0].strip() if lines else ""
    options = [line for line in lines[1:] if line.startswith(OPTION_PREFIX)]
    scratch = [line.strip() for line in lines[1:] if line.strip().isdigit()]
    return secret, options, scratch


def merge_options(current, wanted):
    """Wanted options, keeping the PAM module's state on lines whose settings are unchanged."""
    by_key = {option_key(line): line for line in current}
    return [by_key.get(option_key(line), line) for line in wanted]


def new_secret():
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii").rstrip("=")


def new_scratch_codes(count):
    # Eight digits without a leading zero, as google-authenticator writes them.
    return [str(10_000_000 + secrets.randbelow(90_000_000)) for _code in range(count)]


def otpauth_uri(secret, label, issuer):
    query = urlencode(
        {"secret": secret, "issuer": issuer, "algorithm": "SHA1", "digits": 6, "period": 30}
    )
    return f"otpauth://totp/{quote(issuer)}:{quote(label)}?{query}"


def write_atomically(module, path, content):
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".totp-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        os.rename(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        module.fail_json(msg=f"could not write {path}: {exc}; check that its directory exists")


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "owner": {"type": "str", "default": "root"},
            "group": {"type": "str", "default": "root"},
            "rotate": {"type": "bool", "default": False},
            "window_size": {"type": "int", "default": 3},
            "rate_limit_attempts": {"type": "int", "default": 3},
            "rate_limit_seconds": {"type": "int", "default": 30},
            "disallow_reuse": {"type": "bool", "default": True},
            "scratch_codes": {"type": "int", "default": 5},
            "issuer": {"type": "str", "default": "TechOps"},
            "label": {"type": "str"},
        },
        supports_check_mode=True,
    )
    params = module.params
    path = params["path"]

    if not 1 <= params["window_size"] <= 21:
        module.fail_json(msg=f"window_size must be between 1 and 21, got {params['window_size']}")
    if params["rate_limit_attempts"] < 0 or not 1 <= params["rate_limit_seconds"] <= 65535:
        module.fail_json(msg="rate_limit_attempts must be 0 or more, rate_limit_seconds 1 to 65535")
    if not 0 <= params["scratch_codes"] <= 10:
        module.fail_json(
            msg=f"scratch_codes must be between 0 and 10, got {params['scratch_codes']}"
        )

    # Read the current state.
    exists = os.path.exists(path)
    current = ""
    if exists:
        try:
            with open(path) as handle:
                current = handle.read()
        except OSError as exc:
            module.fail_json(msg=f"could not read {path}: {exc}")
    secret, options, scratch = parse(current)
    has_secret = bool(secret) and not secret.startswith('"')

    result = {"changed": False, "path": path, "created": False, "enrolled": has_secret}

    if params["state"] == "absent":
        result["options"] = []
        if exists:
            result["changed"] = True
            result["diff"] = {"before": "\n".join(options) + "\n", "after": ""}
            if not module.check_mode:
                os.unlink(path)
        result["enrolled"] = False
        module.exit_json(**result)

    # Compute the desired state.
    wanted = desired_options(params)
    create = not has_secret or params["rotate"]
    if create:
        secret = new_secret()
        scratch = new_scratch_codes(params["scratch_codes"])
        new_options = wanted
    else:
        new_options = merge_options(options, wanted)
    content = "\n".join([secret, *new_options, *scratch]) + "\n"
    content_changed = create or content != current

    # Owner, group and mode are fixed: pam_google_authenticator refuses looser files.
    attrs_changed = exists and _attrs_differ(module, path, params)

    result.update(
        changed=content_changed or attrs_changed,
        created=create,
        enrolled=True,
        options=new_options,
        diff={
            "before": "\n".join(options) + "\n" if exists else "",
            "after": "\n".join(new_options) + "\n",
        },
    )
    if create:
        label = params["label"] or os.path.basename(path)
        result.update(
            secret=secret,
            uri=otpauth_uri(secret, label, params["issuer"]),
            scratch_codes=scratch,
        )

    if module.check_mode:
        module.exit_json(**result)

    # Act.
    if content_changed:
        write_atomically(module, path, content)
    if content_changed or attrs_changed:
        os.chown(path, *_ids(module, params))
        os.chmod(path, 0o600)
    module.exit_json(**result)


def _ids(module, params):
    """The numeric owner and group the file must have."""
    try:
        return pwd.getpwnam(params["owner"]).pw_uid, grp.getgrnam(params["group"]).gr_gid
    except KeyError as exc:
        module.fail_json(msg=f"unknown owner or group {exc}: create the account first")


def _attrs_differ(module, path, params):
    """Whether owner, group or mode differ from what the file must have.

    pam_google_authenticator rewrites the file with mode 0400 after each login: 0400 and
    0600 are both right; any access for group or others is not.
    """
    stat = os.stat(path)
    owner, group = _ids(module, params)
    return (
        stat.st_uid != owner
        or stat.st_gid != group
        or (stat.st_mode & 0o7777) not in (0o400, 0o600)
    )


if __name__ == "__main__":
    main()

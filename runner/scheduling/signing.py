"""SSH signatures over change documents, as git signs commits with SSH keys.

`ssh-keygen -Y sign` makes the signature with the signer's own key (on disk, or in their
agent), and `ssh-keygen -Y verify` checks it against an allowed-signers file
(ssh-keygen(1), ALLOWED SIGNERS): OpenSSH does the cryptography, this module only names
who signed. A signature carries its public key, so an auditor can check it later from the
ledger alone (`check`), without the allowed-signers file of the day.

The file is read here too, line by line, so that a malformed one is refused naming the
line, before anyone signs or runs anything.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import shlex
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from runner.core.errors import UserError

ARMOR_BEGIN = "-----BEGIN SSH SIGNATURE-----"
ARMOR_END = "-----END SSH SIGNATURE-----"
KEY_TYPES = {
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
}
OPTIONS = {"cert-authority", "namespaces", "valid-after", "valid-before"}
TIMEOUT_S = 120  # a signer typing a key passphrase, or touching a security key


class SigningError(UserError):
    """A signature that could not be made or does not verify: one line saying why."""


@dataclass(frozen=True)
class Signer:
    """One line of an allowed-signers file."""

    principals: tuple[str, ...]
    key_type: str
    key_blob: bytes
    namespaces: tuple[str, ...] | None  # patterns; None: any namespace
    line: int
    cert_authority: bool = False

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key_blob)

    def allows(self, namespace: str) -> bool:
        return self.namespaces is None or any(
            fnmatch.fnmatchcase(namespace, pattern) for pattern in self.namespaces
        )


@dataclass(frozen=True)
class Signature:
    """An armored SSH signature and what it says of itself: the signing key and the
    namespace it was made for."""

    armored: str
    key_type: str
    key_blob: bytes
    namespace: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key_blob)

    @property
    def public_key(self) -> str:
        return f"{self.key_type} {base64.b64encode(self.key_blob).decode()}"


def fingerprint(key_blob: bytes) -> str:
    """The key's SHA256 fingerprint, as `ssh-keygen -l` prints it."""
    digest = base64.b64encode(hashlib.sha256(key_blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def parse_signature(armored: str) -> Signature:
    """Read an SSHSIG signature (OpenSSH's PROTOCOL.sshsig): the key and the namespace."""
    text = armored.strip()
    if not (text.startswith(ARMOR_BEGIN) and text.endswith(ARMOR_END)):
        raise SigningError("not an SSH signature (expected -----BEGIN SSH SIGNATURE-----)")
    body = "".join(text[len(ARMOR_BEGIN) : -len(ARMOR_END)].split())
    try:
        blob = base64.b64decode(body, validate=True)
        if blob[:6] != b"SSHSIG":
            raise ValueError("magic")
        offset = 6 + 4  # magic, version
        key_blob, offset = _string(blob, offset)
        namespace, offset = _string(blob, offset)
        key_type, _ = _string(key_blob, 0)
    except (ValueError, binascii.Error, struct.error):
        raise SigningError("the SSH signature is damaged (cannot be decoded)") from None
    return Signature(text + "\n", key_type.decode(), key_blob, namespace.decode())


def _string(blob: bytes, offset: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from(">I", blob, offset)
    start = offset + 4
    if start + length > len(blob):
        raise ValueError("truncated")
    return blob[start : start + length], start + length


def read_allowed_signers(path: Path) -> list[Signer]:
    """Every signer of the file, or SigningError naming the first bad line."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SigningError(
            f"allowed-signers file {path} does not exist: create it with one line per "
            'approver (principal namespaces="..." key), see docs/change-control.md'
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SigningError(f"allowed-signers file {path} cannot be read: {exc}") from None
    signers = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            signers.append(_signer(line, number))
        except ValueError as exc:
            raise SigningError(
                f"{path} line {number}: {exc}; expected `PRINCIPAL[,PRINCIPAL...] "
                '[namespaces="..."] KEYTYPE BASE64KEY [comment]`'
            ) from None
    return signers


def _signer(line: str, number: int) -> Signer:
    try:
        fields = shlex.split(line, posix=True)
    except ValueError as exc:
        raise ValueError(f"unbalanced quotes ({exc})") from None
    if len(fields) < 3:
        raise ValueError("too few fields")
    principals = tuple(p for p in fields[0].split(",") if p)
    if not principals:
        raise ValueError("no principal")
    namespaces: tuple[str, ...] | None = None
    cert_authority = False
    rest = fields[1:]
    if rest[0] not in KEY_TYPES:
        # The options are split on the commas outside quotes, as sshd reads them
        # (namespaces="a,b" is one option): from the raw line, not the unquoted field.
        for option in _options(line.split(None, 1)[1]):
            name, _, value = option.partition("=")
            if name.lower() not in OPTIONS:
                raise ValueError(
                    f"unknown option {name!r} (known: {', '.join(sorted(OPTIONS))}) "
                    f"or unknown key type (known: {', '.join(sorted(KEY_TYPES))})"
                )
            if name.lower() == "namespaces":
                namespaces = tuple(n for n in value.strip('"').split(",") if n)
            elif name.lower() == "cert-authority":
                cert_authority = True
        rest = rest[1:]
    if len(rest) < 2:
        raise ValueError("no key after the options")
    key_type, encoded = rest[0], rest[1]
    if key_type not in KEY_TYPES:
        raise ValueError(f"unknown key type {key_type!r}")
    try:
        blob = base64.b64decode(encoded, validate=True)
        inner, _ = _string(blob, 0)
    except (ValueError, binascii.Error, struct.error):
        raise ValueError("the key is not valid base64 of an SSH public key") from None
    if inner.decode(errors="replace") != key_type:
        raise ValueError(f"the key says it is {inner.decode(errors='replace')}, not {key_type}")
    return Signer(principals, key_type, blob, namespaces, number, cert_authority)


def _options(text: str) -> list[str]:
    """The comma-separated options at the start of `text`, up to the first blank outside
    quotes, quotes kept."""
    options, current, quoted = [], "", False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif not quoted and char == ",":
            options.append(current)
            current = ""
            continue
        elif not quoted and char.isspace():
            break
        current += char
    options.append(current)
    return [o for o in options if o]


def sign(message: bytes, key: Path, namespace: str) -> Signature:
    """Sign with `ssh-keygen -Y sign`; the key may ask for its passphrase on the terminal.
    `key` is a private key, or a public key whose private half is in the agent."""
    if not key.is_file():
        raise SigningError(f"signing key {key} does not exist: give --key PATH")
    with tempfile.TemporaryDirectory(prefix="techops-sign-") as tmp:
        document = Path(tmp) / "change"
        document.write_bytes(message)
        done = _keygen(["-Y", "sign", "-f", str(key), "-n", namespace, str(document)], None)
        if done.returncode != 0:
            raise SigningError(f"ssh-keygen could not sign with {key}: {_last_line(done)}")
        return parse_signature(document.with_suffix(".sig").read_text())


def verify(
    message: bytes, signature: Signature, allowed: Path, signers: list[Signer], namespace: str
) -> Signer:
    """The allowed signer who made this signature over this message for this namespace,
    checked by `ssh-keygen -Y verify`; SigningError naming what is wrong otherwise."""
    if signature.namespace != namespace:
        raise SigningError(
            f"the signature is for {signature.namespace!r}, not {namespace!r}: "
            "sign with the namespace techops gives"
        )
    matching = [s for s in signers if s.key_blob == signature.key_blob and not s.cert_authority]
    if not matching:
        raise SigningError(
            f"key {signature.fingerprint} is not in the allowed signers ({allowed}): "
            "an approver's key must be listed there"
        )
    permitted = [s for s in matching if s.allows(namespace)]
    if not permitted:
        raise SigningError(
            f"key {signature.fingerprint} ({', '.join(matching[0].principals)}) may not sign "
            f"for {namespace} (its namespaces= in {allowed} line {matching[0].line})"
        )
    signer = permitted[0]
    with tempfile.TemporaryDirectory(prefix="techops-verify-") as tmp:
        sig = Path(tmp) / "change.sig"
        sig.write_text(signature.armored)
        command = ["-Y", "verify", "-f", str(allowed), "-I", signer.principals[0]]
        done = _keygen([*command, "-n", namespace, "-s", str(sig)], message)
    if done.returncode != 0:
        raise SigningError(
            f"the signature by {signer.principals[0]} ({signature.fingerprint}) does not "
            f"verify: {_last_line(done)}"
        )
    return signer


def check(message: bytes, signature: Signature, namespace: str) -> bool:
    """Whether the signature is sound for this message, by the key it carries alone (no
    allowed-signers file): what an auditor can check from the ledger."""
    with tempfile.TemporaryDirectory(prefix="techops-check-") as tmp:
        sig = Path(tmp) / "change.sig"
        sig.write_text(signature.armored)
        done = _keygen(["-Y", "check-novalidate", "-n", namespace, "-s", str(sig)], message)
    return done.returncode == 0


def _keygen(args: list[str], stdin: bytes | None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            ["ssh-keygen", *args],
            input=stdin,
            capture_output=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        missing = "ssh-keygen is not installed (Debian: apt install openssh-client)"
        raise SigningError(missing) from None
    except subprocess.TimeoutExpired:
        raise SigningError(f"ssh-keygen did not finish within {TIMEOUT_S} s") from None


def _last_line(done: subprocess.CompletedProcess[bytes]) -> str:
    lines = (done.stderr or done.stdout or b"").decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"exit {done.returncode}"

"""Static bearer tokens: kube-apiserver's ``--token-auth-file``.

The file is CSV, one credential a line: ``token,user,uid,"group1,group2"`` (the groups
column is optional; further columns are ignored; blank lines and lines starting with
``#`` are skipped). :func:`ensure_token` adds a fresh ``secrets.token_urlsafe(32)`` for a
user that has none (and keeps the token of one that has, updating its uid and groups),
rewriting the file atomically with mode 0600 under a lock, so several processes may
provision users at once. :class:`TokenFile` answers which user a token belongs to,
comparing in constant time and re-reading the file when it changes. Every user it
returns is also in ``system:authenticated``.
"""

from __future__ import annotations

import csv
import fcntl
import hmac
import io
import logging
import os
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.api.identity import AUTHENTICATED, UserInfo
from lab.api.pki import write_private
from lab.errors import LabError

__all__ = ["TokenFile", "TokenRow", "ensure_token", "read_token_file"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenRow:
    """One line of the token file."""

    token: str
    user: str
    uid: str
    groups: tuple[str, ...]

    def user_info(self) -> UserInfo:
        groups = self.groups if AUTHENTICATED in self.groups else (*self.groups, AUTHENTICATED)
        return UserInfo(self.user, self.uid, groups)


def _parse(text: str, path: Path) -> list[TokenRow]:
    rows: list[TokenRow] = []
    for number, record in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not record or not "".join(record).strip() or record[0].lstrip().startswith("#"):
            continue
        if len(record) < 3:
            raise LabError(
                f"{path} line {number}: a token line needs at least token,user,uid: "
                'write token,user,uid,"group1,group2"'
            )
        token, user, uid = (field.strip() for field in record[:3])
        if not token or not user:
            raise LabError(f"{path} line {number}: the token and the user name must not be empty")
        groups = tuple(g.strip() for g in record[3].split(",") if g.strip()) if len(record) > 3 else ()
        rows.append(TokenRow(token, user, uid, groups))
    return rows


def read_token_file(path: Path) -> list[TokenRow]:
    """Every credential in ``path``; LabError (one line) when it is unreadable or malformed."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabError(f"cannot read the token file {path} ({exc}): create it or fix the path") from None
    return _parse(text, Path(path))


def _render(rows: Sequence[TokenRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    for row in rows:
        writer.writerow([row.token, row.user, row.uid, ",".join(row.groups)])
    return out.getvalue()


def ensure_token(path: Path, user: str, uid: str = "", groups: Sequence[str] = ()) -> str:
    """The token of ``user`` in the token file at ``path``, adding a fresh one when it has none.

    The user's uid and groups are set to the ones given. The file (created when missing)
    is rewritten atomically with mode 0600; concurrent callers are serialised by a lock
    file beside it.
    """
    if not user or "," in user or "\n" in user:
        raise LabError(f"cannot add a token for user {user!r}: a user name is non-empty, without commas")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(f".{path.name}.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        rows = read_token_file(path) if path.exists() else []
        wanted = tuple(groups)
        for index, row in enumerate(rows):
            if row.user == user:
                if (row.uid, row.groups) != (uid, wanted):
                    rows[index] = TokenRow(row.token, user, uid, wanted)
                    write_private(path, _render(rows).encode())
                elif path.stat().st_mode & 0o077:
                    os.chmod(path, 0o600)
                return row.token
        token = secrets.token_urlsafe(32)
        rows.append(TokenRow(token, user, uid, wanted))
        write_private(path, _render(rows).encode())
        return token
    finally:
        os.close(fd)


class TokenFile:
    """The users of a token file, re-read when the file changes (size, mtime or inode).

    The file must be readable when this is made (LabError otherwise, as kube-apiserver
    refuses to start). Later, a file that becomes unreadable or malformed authenticates
    nobody until it is fixed (logged), rather than the last users it held.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._rows = read_token_file(self.path)
        self._stamp = self._stat()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _current(self) -> list[TokenRow]:
        stamp = self._stat()
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._rows = read_token_file(self.path)
                except LabError as exc:
                    log.error("%s; no static token authenticates until it is fixed", exc)
                    self._rows = []
                self._stamp = stamp
            return self._rows

    def lookup(self, token: str) -> UserInfo | None:
        """The user ``token`` belongs to, or None (every row is compared, in constant time)."""
        if not token:
            return None
        wanted = token.encode()
        found: TokenRow | None = None
        for row in self._current():
            if hmac.compare_digest(row.token.encode(), wanted) and found is None:
                found = row
        return found.user_info() if found is not None else None

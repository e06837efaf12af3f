"""The engine image runs as root over folders other local users can reach: it never follows a link.

A claim folder (``volumes/<namespace>/<claim>``) is reachable by anyone who can guess its
name, so a link planted there (``wal -> /etc``) must not make the engine give ``/etc`` to
``postgres`` or change its mode.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from lab.errors import LabError
from lab.kubelet import engine_image


def test_a_planted_link_in_the_backup_store_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.mkdir(mode=0o700)
    before = target.stat()
    store = tmp_path / "store"
    store.mkdir()
    (store / "wal").symlink_to(target)
    with pytest.raises(LabError, match="is a symbolic link: remove it"):
        engine_image._prepare_store(store)
    after = target.stat()
    assert (after.st_uid, after.st_gid, stat.S_IMODE(after.st_mode)) == (
        before.st_uid,
        before.st_gid,
        stat.S_IMODE(before.st_mode),
    )


def test_a_claim_folder_that_is_a_link_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    home = tmp_path / "home"
    home.symlink_to(target)
    with pytest.raises(LabError, match="is a symbolic link"):
        engine_image._prepare(home)
    assert stat.S_IMODE(target.stat().st_mode) == 0o700

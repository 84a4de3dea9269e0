"""Atomic writes (reports, checkpoints, logs): the mode a plain open() gives, nothing left behind on failure."""
import os

import pytest

from hrvit_kernels._files import write_atomically


def test_a_new_file_gets_the_umask_mode_not_the_temporary_files(tmp_path):
    old = os.umask(0o022)
    try:
        write_atomically(tmp_path / "report.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "report.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "report.json").read_text() == "{}"


def test_a_replaced_file_keeps_its_mode(tmp_path):
    target = tmp_path / "log.jsonl"
    target.write_text("old")
    target.chmod(0o640)
    write_atomically(target, b"new")
    assert target.stat().st_mode & 0o777 == 0o640 and target.read_text() == "new"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "ckpt.pth"
    target.write_text("old")
    with pytest.raises(TypeError):
        write_atomically(target, 123)  # neither str nor bytes: fails while writing
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pth"]

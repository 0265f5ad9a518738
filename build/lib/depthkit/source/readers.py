"""Reading a random-access source's samples by their `SampleRef`: a `MemberReader` (files of a
folder, or members of a zip) that pickles to a worker process, which then opens its own zip
handle once and reuses it for every task."""

from __future__ import annotations

import zipfile
from functools import cache

from depthkit.source.sample import Problem, Sample, SampleRef, make_sample


def read_zip_member(zf: zipfile.ZipFile, member: str | zipfile.ZipInfo) -> bytes:
    """One zip member's bytes; a bad CRC, encryption or a missing name become OSError."""
    try:
        return zf.read(member)
    except (zipfile.BadZipFile, RuntimeError, ValueError, KeyError) as err:
        raise OSError(str(err)) from None


class MemberReader:
    """Reads `SampleRef.members`: files of a folder source, or members of a zip (opened on
    first use). Pickles as its zip path only; unpickling in a process reuses that process's
    reader for the same zip (`process_reader`), so a worker opens each zip once, not once
    per task."""

    def __init__(self, zip_path: str | None = None) -> None:
        self.zip_path = zip_path
        self._zf: zipfile.ZipFile | None = None

    def read(self, name: str) -> bytes:
        """The bytes of one member (OSError if unreadable)."""
        if self.zip_path is None:
            with open(name, "rb") as f:
                return f.read()
        if self._zf is None:
            self._zf = zipfile.ZipFile(self.zip_path)
        return read_zip_member(self._zf, name)

    def close(self) -> None:
        """Close the zip handle, if open (the reader reopens it on the next read)."""
        if self._zf is not None:
            self._zf.close()
            self._zf = None

    def __reduce__(self) -> tuple:
        return (process_reader, (self.zip_path,))


@cache
def process_reader(zip_path: str | None) -> MemberReader:
    """This process's reader for a zip (or for folders: None), made on first use."""
    return MemberReader(zip_path)


def read_ref(ref: SampleRef, reader: MemberReader) -> Sample | Problem:
    """Read one sample's bytes (unchecked) from its ref; a Problem if a member is unreadable."""
    try:
        fgbg, mask, depth = (reader.read(m) for m in ref.members)
    except OSError as err:
        return Problem(ref.path, f"unreadable: {err}")
    return make_sample((ref.bg, ref.group, ref.nnn), ref.path, fgbg, mask, depth)

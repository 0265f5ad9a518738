"""Reading samples by ref: a zip reader pickles as its path, and a worker process reuses one
reader (one open zip handle) per zip."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

from depthkit.source.open import open_source
from depthkit.source.readers import MemberReader, process_reader, read_ref
from depthkit.source.sample import Problem, Sample, SampleRef


def test_zip_refs_read_like_samples_and_readers_unpickle_to_one_per_zip(tmp_path, synth_root):
    zpath = tmp_path / "school.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted(Path(synth_root).rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(synth_root).as_posix())
    with open_source(zpath) as src:
        want = [s for s in src.samples(check=False) if isinstance(s, Sample)]
        refs = [r for r in src.sample_refs() if isinstance(r, SampleRef)]
        reader = src.reader()
    try:
        copy = pickle.loads(pickle.dumps(reader))
        assert copy is process_reader(str(zpath)) is pickle.loads(pickle.dumps(reader))
        assert [read_ref(r, copy) for r in refs] == want
    finally:
        reader.close()
        copy.close()


def test_unreadable_member_is_a_problem(tmp_path):
    ref = SampleRef("k", 1, 1, 1, "fg_bg/001/001/001.jpg",
                    tuple(str(tmp_path / n) for n in ("a.jpg", "b.jpg", "c.jpg")))
    got = read_ref(ref, MemberReader())
    assert isinstance(got, Problem) and got.reason.startswith("unreadable")

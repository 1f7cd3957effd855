"""A damaged IAM-OnDB ``.npz`` is one error and leaves no open file behind (ResourceWarning)."""

from __future__ import annotations

import gc
import warnings

import pytest

from inkpack.data.formats.iamondb import IamOnDbNpz
from inkpack.errors import InkpackError


@pytest.mark.parametrize("data", [b"PK\x03\x04" + b"\0" * 100, b"not an archive at all"])
def test_damaged_npz_is_one_error_and_closes_its_file(tmp_path, data):
    p = tmp_path / "d.npz"
    p.write_bytes(data)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(InkpackError, match="d.npz: not a readable npz file"):
            IamOnDbNpz(p)
        gc.collect()
    assert not [w for w in seen if issubclass(w.category, ResourceWarning)], [str(w.message) for w in seen]

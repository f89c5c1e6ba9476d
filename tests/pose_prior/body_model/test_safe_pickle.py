"""Restricted unpickler: chumpy -> numpy, scipy csc allowed, every other class refused."""

from __future__ import annotations

import collections
import os
import pickle

import numpy as np
import pytest
import scipy.sparse

from pose_prior.safe_pickle import UnsafePickleError, restricted_load
from tests.pose_prior.body_model.chumpy_fakes import Ch, Select, fake_chumpy


def _dump(obj, path, protocol=2):
    with fake_chumpy(), open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=protocol)
    return path


def test_chumpy_objects_become_the_arrays_they_hold(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3, 4))
    base = rng.normal(size=200)
    idxs = rng.permutation(200)[:60]
    reg = scipy.sparse.random(4, 7, density=0.4, format="csc", random_state=1)
    obj = {"ch": Ch(x), "sel": Select(Ch(base), idxs, (20, 3)), "nested": Select(Ch(Ch(base)), idxs, (60,)),
           "csc": reg, "plain": np.arange(6, dtype=np.uint32), "s": "lrotmin", "n": 3}
    out = restricted_load(_dump(obj, tmp_path / "m.pkl"))
    np.testing.assert_array_equal(out["ch"], x)
    np.testing.assert_array_equal(out["sel"], base[idxs].reshape(20, 3))
    np.testing.assert_array_equal(out["nested"], base[idxs])
    assert scipy.sparse.issparse(out["csc"])
    np.testing.assert_array_equal(out["csc"].toarray(), reg.toarray())
    assert out["plain"].dtype == np.uint32 and out["s"] == "lrotmin" and out["n"] == 3


def test_old_scipy_module_path_is_accepted(tmp_path):
    """SMPL's files name scipy.sparse.csc.csc_matrix; newer scipy pickles scipy.sparse._csc."""
    data = pickle.dumps({"J": scipy.sparse.csc_matrix(np.eye(3))}, protocol=2)
    for new in (b"scipy.sparse.csc\n", b"scipy.sparse._csc\n"):
        patched = data.replace(b"scipy.sparse._csc\n", new)
        assert new in patched
        (tmp_path / "r.pkl").write_bytes(patched)
        np.testing.assert_array_equal(restricted_load(tmp_path / "r.pkl")["J"].toarray(), np.eye(3))


def test_protocol0_dict_of_arrays_like_gmm(tmp_path):
    """SMPLify's gmm_08.pkl: a protocol-0 pickle of a dict of numpy arrays."""
    rng = np.random.default_rng(1)
    gmm = {"means": rng.normal(size=(8, 69)), "covars": rng.normal(size=(8, 69, 69)), "weights": rng.random(8)}
    out = restricted_load(_dump(gmm, tmp_path / "gmm.pkl", protocol=0))
    for k, v in gmm.items():
        np.testing.assert_array_equal(out[k], v)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize("payload,name", [
    (_Evil(), "system"),
    (collections.OrderedDict(a=1), "collections.OrderedDict"),
    ({"f": eval}, "eval"),
])
def test_other_classes_are_refused_naming_file_and_class(tmp_path, payload, name):
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps({"x": np.zeros(2), "y": payload}, protocol=2))
    with pytest.raises(UnsafePickleError) as err:
        restricted_load(path)
    assert str(path) in str(err.value) and name in str(err.value)


def test_extra_allowed_classes(tmp_path):
    path = tmp_path / "od.pkl"
    path.write_bytes(pickle.dumps(collections.OrderedDict(a=np.ones(2)), protocol=2))
    out = restricted_load(path, extra_allowed=[("collections", "OrderedDict")])
    assert isinstance(out, collections.OrderedDict)
    np.testing.assert_array_equal(out["a"], np.ones(2))


def test_corrupt_file_names_the_file(tmp_path):
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps({"a": np.arange(100)}, protocol=2)[:40])
    with pytest.raises(pickle.UnpicklingError, match="cut.pkl"):
        restricted_load(path)


def test_protocol0_chumpy_objects(tmp_path):
    """Protocol 0/1 build objects through copyreg._reconstructor(cls, object, None): placeholders allow it."""
    x = np.arange(6.0).reshape(2, 3)
    out = restricted_load(_dump({"ch": Ch(x)}, tmp_path / "p0.pkl", protocol=0))
    np.testing.assert_array_equal(out["ch"], x)


def test_pickle_module_for_torch_load(tmp_path):
    """torch.load(pickle_module=...) with tensors allowed by name and a package mapped to placeholders."""
    torch = pytest.importorskip("torch")
    from pose_prior.safe_pickle import Placeholder, restricted_pickle_module, torch_tensor_globals

    data = {"w": torch.nn.Parameter(torch.randn(3, 2)), "i": torch.arange(4), "od": collections.OrderedDict(a=1),
            "arr": np.ones(3), "size": torch.Size([2, 3])}
    path = tmp_path / "t.pt"
    torch.save(data, path)
    module = restricted_pickle_module(str(path), torch_tensor_globals())
    out = torch.load(path, weights_only=False, pickle_module=module)
    assert isinstance(out["w"], torch.nn.Parameter) and torch.equal(out["w"], data["w"])
    assert torch.equal(out["i"], data["i"]) and out["od"] == {"a": 1} and out["size"] == (2, 3)
    np.testing.assert_array_equal(out["arr"], np.ones(3))

    # a class of a placeholder package absorbs its items and state; a foreign class is refused
    with fake_chumpy():
        torch.save({"c": Ch(np.zeros(2))}, path)
    out = torch.load(path, weights_only=False, pickle_module=restricted_pickle_module(str(path), torch_tensor_globals(),
                                                                                       placeholder_packages=["chumpy"]))
    assert isinstance(out["c"], Placeholder) and out["c"].pickled_class == "chumpy.ch.Ch"
    torch.save({"y": _Evil()}, path)
    with pytest.raises(UnsafePickleError, match=r"t\.pt: refusing to unpickle class .*system"):
        torch.load(path, weights_only=False, pickle_module=restricted_pickle_module(str(path), torch_tensor_globals()))

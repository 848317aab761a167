"""Regenerate uhashring.json and ketama.json from the real packages.

    python tests/vectors/make_vectors.py

Keys are key0..key999 (plus vnode-name keys for the boundary cases); nodes are
node1..node10 (equal or 1..10 weights) and node1..node61. libketama runs in a
subprocess per ring (see run_libketama in tests/test_pyring_oracles.py).
"""

import json
import os
import platform
import sys
import tempfile
from importlib.metadata import version

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # tests/
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # the repo, for hashring._pyring
from test_pyring_oracles import run_libketama  # noqa: E402

KEYS = [f"key{i}" for i in range(1000)]
N10 = {f"node{i}": 1 for i in range(1, 11)}
N61 = {f"node{i}": 1 for i in range(1, 62)}
W10 = {f"node{i}": i for i in range(1, 11)}
BOUNDARY = [f"node{i}-{j}" for i in range(1, 11) for j in range(40)]


def dump(peer, package, constructor, cases):
    doc = {
        "peer": peer,
        "package": package,
        "package_version": version(package),
        "python": platform.python_version(),
        "generated_by": "tests/vectors/make_vectors.py",
        "constructor": constructor,
        "cases": cases,
    }
    with open(os.path.join(HERE, f"{peer}.json"), "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")


def uhashring_cases():
    from uhashring import HashRing

    cases = []
    for name, nodes, keys in [
        ("ketama", N10, KEYS),
        ("ketama_boundary_keys", N10, BOUNDARY),
        ("ketama_weighted", W10, KEYS),
        ("ketama_61_nodes", N61, KEYS),
    ]:
        r = HashRing(dict(nodes), hash_fn="ketama")
        case = {"name": name, "compat": "uhashring", "nodes": nodes}
        if name != "ketama_boundary_keys":
            case["ring_points"] = len(r.get_points())
            case["ring_first_8_points"] = r.get_points()[:8]
        case["mapping"] = {k: r.get_node(k) for k in keys}
        cases.append(case)
    return cases


def ketama_cases(workdir):
    cases = []
    for name, nodes, keys in [
        ("equal_weights_10", {n: 100 for n in N10}, KEYS),
        ("boundary_keys_10", {n: 100 for n in N10}, BOUNDARY),
        ("equal_weights_61", {n: 100 for n in N61}, KEYS),
        ("weighted", W10, KEYS),
    ]:
        points, answers = run_libketama(workdir, list(nodes.items()), keys, name)
        case = {"name": name, "compat": "ketama", "nodes": nodes}
        if name != "boundary_keys_10":
            case["ring_points"] = len(points)
            case["ring_first_8_points"] = points[:8]
        case["mapping"] = {k: a for k, (_, a) in zip(keys, answers)}
        cases.append(case)
    return cases


if __name__ == "__main__":
    dump("uhashring", "uhashring", "uhashring.HashRing(nodes, hash_fn='ketama')", uhashring_cases())
    with tempfile.TemporaryDirectory() as tmp:
        dump("ketama", "ketama", "ketama.Ketama(conf), conf lines '<node>\\t<weight>\\n'; answers = get_server(key)[1]",
             ketama_cases(tmp))

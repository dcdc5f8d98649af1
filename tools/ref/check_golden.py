#!/usr/bin/python3
"""Check deepseek_ref.py against a fixture set (golden or generated): every logits file, routing sets,
routing weights, MTP logits/routing, decode. Exit status 0 iff all max |diff| <= tol and all sets match.

usage: /usr/bin/python3 tools/ref/check_golden.py [--f32] [--tol 1e-4] DIR [DIR ...]
       (DIR = tests/fixtures/golden/dev, tests/fixtures/models/v3-bf16, ...; default: all of them)
"""
import argparse
import glob
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deepseek_ref as R  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def load(d, name):
    p = os.path.join(d, "outputs", name + ".npy")
    return np.load(p) if os.path.exists(p) else None


def sets_equal(a, b):
    a = np.sort(np.asarray(a), -1)
    b = np.sort(np.asarray(b), -1)
    return bool((a == b).all()), int((a != b).any(-1).sum())


def wdiff(ids_g, w_g, ids_r, w_r):
    """Max |Δweight| matching by expert id (only rows where the sets agree)."""
    ids_g, w_g, ids_r, w_r = map(np.asarray, (ids_g, w_g, ids_r, w_r))
    ig, ir = np.argsort(ids_g, -1), np.argsort(ids_r, -1)
    sg = np.take_along_axis(w_g, ig, -1)
    sr = np.take_along_axis(w_r, ir, -1)
    ok = (np.take_along_axis(ids_g, ig, -1) == np.take_along_axis(ids_r, ir, -1)).all(-1)
    return float(np.abs(sg - sr)[ok].max()) if ok.any() else 0.0


def check(d, dtype, tol, verbose=True):
    m = R.Model(os.path.join(d, "checkpoint"), dtype)
    res = {"logits": 0.0, "hidden": 0.0, "mtp_logits": 0.0, "decode_logits": 0.0,
           "decode_mtp_logits": 0.0, "routing_weights": 0.0}
    bad = []
    i = 0
    while True:
        tok = load(d, f"seq{i}_tokens")
        if tok is None:
            break
        r = R.run_sequence(m, tok.tolist())
        lg = load(d, f"seq{i}_logits")
        res["logits"] = max(res["logits"], float(np.abs(r["logits"].numpy() - lg).max()))
        hd = load(d, f"seq{i}_hidden")
        if hd is not None:
            res["hidden"] = max(res["hidden"], float(np.abs(r["hidden"].numpy() - hd).max()))
        rg = load(d, f"seq{i}_routing")
        if rg is not None and rg.size:
            ours = np.stack([x.numpy() for x in r["routing"]])
            ok, n = sets_equal(ours, rg)
            if not ok:
                bad.append(f"seq{i}_routing: {n} sets differ")
            rw = load(d, f"seq{i}_routing_weights")
            if rw is not None:
                res["routing_weights"] = max(res["routing_weights"], wdiff(
                    rg, rw, ours, np.stack([x.numpy() for x in r["routing_weights"]])))
        mi = load(d, f"seq{i}_mtp_input_ids")
        if mi is not None:
            if not (mi == r["mtp_input_ids"]).all():
                bad.append(f"seq{i}_mtp_input_ids differ")
            res["mtp_logits"] = max(res["mtp_logits"],
                                    float(np.abs(r["mtp_logits"].numpy() - load(d, f"seq{i}_mtp_logits")).max()))
            mr = load(d, f"seq{i}_mtp_routing")
            if mr is not None:
                ok, n = sets_equal(r["mtp_routing"].numpy(), mr)
                if not ok:
                    bad.append(f"seq{i}_mtp_routing: {n} sets differ")
        i += 1
    dt = load(d, "decode_tokens")
    if dt is not None:
        r = R.run_decode(m, dt.tolist())
        res["decode_logits"] = float(np.abs(r["logits"].numpy() - load(d, "decode_logits")).max())
        rg = load(d, "decode_routing")
        if rg is not None and rg.size:
            ok, n = sets_equal(np.stack([x.numpy() for x in r["routing"]]), rg)
            if not ok:
                bad.append(f"decode_routing: {n} sets differ")
        mi = load(d, "decode_mtp_input_ids")
        if mi is not None:
            if not (mi == r["mtp_input_ids"]).all():
                bad.append("decode_mtp_input_ids differ")
            res["decode_mtp_logits"] = float(np.abs(r["mtp_logits"].numpy() - load(d, "decode_mtp_logits")).max())
            mr = load(d, "decode_mtp_routing")
            if mr is not None:
                ok, n = sets_equal(r["mtp_routing"].numpy(), mr)
                if not ok:
                    bad.append(f"decode_mtp_routing: {n} sets differ")
    unused = sorted(set(m.ck.raw) - m.ck.used)
    if unused:
        bad.append(f"{len(unused)} checkpoint tensors never used, e.g. {unused[:3]}")
    for k in ("logits", "hidden", "mtp_logits", "decode_logits", "decode_mtp_logits"):
        if res[k] > tol:
            bad.append(f"{k}: max |diff| {res[k]:.3g} > {tol}")
    wtol = 1e-5
    try:
        with open(os.path.join(d, "manifest.json")) as f:
            wtol = json.load(f).get("tolerance", {}).get("routing_weights_max_abs", wtol)
    except OSError:
        pass
    if res["routing_weights"] > wtol:
        bad.append(f"routing_weights: {res['routing_weights']:.3g} > {wtol}")
    if verbose:
        print(f"{os.path.relpath(d, ROOT)} [{str(dtype).split('.')[-1]}]: " +
              ", ".join(f"{k} {v:.2e}" for k, v in res.items()) + ("  OK" if not bad else "  FAIL"))
        for b in bad:
            print("   ", b)
    return res, bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="*")
    ap.add_argument("--f32", action="store_true", help="run the reference in float32 (default float64)")
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    dirs = a.dirs or (sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/golden/*/"))) +
                      sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/models/*/"))))
    torch.set_num_threads(1)
    nbad = 0
    for d in dirs:
        _, bad = check(os.path.abspath(d), torch.float32 if a.f32 else torch.float64, a.tol)
        nbad += bool(bad)
    print(f"{len(dirs) - nbad} passed, {nbad} failed")
    return 1 if nbad else 0


if __name__ == "__main__":
    sys.exit(main())

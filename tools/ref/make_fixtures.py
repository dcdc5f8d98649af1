#!/usr/bin/python3
"""Generate new random DeepSeek-V3/V2 checkpoints + expected outputs for ds3's tests.

  /usr/bin/python3 tools/ref/make_fixtures.py [NAME ...]     (default: all; writes tests/fixtures/models/NAME/)

Each fixture: checkpoint/ (HF layout, config.json, 2-3 shards + model.safetensors.index.json),
outputs/*.npy (same names/format as tests/fixtures/golden), manifest.json.  Expected outputs come from
deepseek_ref.py in float64 run on the checkpoint as written (weights read back from the files), then
stored as float32.  Token sequences are re-drawn until every routing decision is at least MIN_MARGIN away
from a tie (selection-score units) and the MTP argmax input is unambiguous.  See tools/ref/README.md.
"""
import json
import os
import shutil
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deepseek_ref as R  # noqa: E402
from st import f32_to_bf16_bits, f32_to_e4m3, write_safetensors  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "models")
MIN_MARGIN = 1e-4          # routing decisions, selection-score units
MIN_ARGMAX_MARGIN = 1e-3   # logit gap for the argmax that feeds the last MTP input
MAX_FIXTURE_BYTES = 1_500_000

BASE = {
    "hidden_act": "silu", "rms_norm_eps": 1e-6, "rope_theta": 10000, "moe_layer_freq": 1,
    "attention_bias": False, "attention_dropout": 0.0, "tie_word_embeddings": False,
    "bos_token_id": 0, "eos_token_id": 1, "initializer_range": 0.02, "aux_loss_alpha": 0.001,
    "seq_aux": True, "ep_size": 1, "pretraining_tp": 1, "use_cache": True,
}


def v3(**kw):
    c = {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
         "scoring_func": "sigmoid", "topk_method": "noaux_tc", "norm_topk_prob": True,
         "routed_scaling_factor": 2.5, "num_nextn_predict_layers": 1}
    c.update(BASE)
    c.update(kw)
    c["num_key_value_heads"] = c["num_attention_heads"]
    return c


def v2(**kw):
    c = {"architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2",
         "scoring_func": "softmax", "topk_method": "greedy", "norm_topk_prob": False,
         "routed_scaling_factor": 1.0}
    c.update(BASE)
    c.update(kw)
    c["num_key_value_heads"] = c["num_attention_heads"]
    return c


def yarn(factor, L0, mscale, mscale_all_dim):
    return {"type": "yarn", "factor": factor, "original_max_position_embeddings": L0,
            "beta_fast": 32, "beta_slow": 1, "mscale": mscale, "mscale_all_dim": mscale_all_dim}


FIXTURES = {
    "v3-bf16": {
        "description": "DeepSeek-V3 layout, BF16 weights, q-LoRA, sigmoid/noaux_tc with 4 groups (keep 2) of 3 "
                       "experts, top-3 of 12, 2 shared experts, 2 dense + 2 MoE layers, 1 MTP layer, odd head "
                       "dims (6 heads, nope 24, rope 16, v 20), no rope_scaling (plain RoPE, no m^2); router bias drawn "
                       "N(-0.5, 0.1) so that biased scores are often negative and masking dropped groups with "
                       "0 instead of -inf changes the choice",
        "storage": "BF16", "seed": 7101, "seq_lens": [1, 5, 24, 70], "n_shards": 3, "bias_mean": -0.5,
        "config": v3(torch_dtype="bfloat16", vocab_size=192, hidden_size=80, intermediate_size=144,
                     moe_intermediate_size=16, num_hidden_layers=4, first_k_dense_replace=2,
                     num_attention_heads=6, q_lora_rank=40, kv_lora_rank=36, qk_nope_head_dim=24,
                     qk_rope_head_dim=16, v_head_dim=20, n_routed_experts=12, n_shared_experts=2,
                     num_experts_per_tok=3, n_group=4, topk_group=2, rope_scaling=None,
                     max_position_embeddings=512),
    },
    "v3-fp8-qproj": {
        "description": "DeepSeek-V3 layout with an FP8 e4m3 checkpoint like the release (F8_E4M3 + F32 "
                       "128x128 weight_scale_inv for block linears, BF16 rest, F32 router bias), q_lora_rank "
                       "null (q_proj), hidden 160 so every [*,160] weight has a 32-wide partial column block, "
                       "partial row blocks (q_proj 224 rows, kv_a 176, kv_b 192, kv_b input 144), 8 groups "
                       "(keep 3) of 2 experts, YaRN with mscale 1.0 != mscale_all_dim 0.8 (cos/sin "
                       "multiplier 1.0454), rope dim 32 with an interior YaRN ramp (low 2, high 9), 1 MTP layer",
        "storage": "FP8", "seed": 7202, "seq_lens": [1, 6, 33, 64], "n_shards": 3,
        "config": v3(torch_dtype="bfloat16", vocab_size=128, hidden_size=160, intermediate_size=224,
                     moe_intermediate_size=24, num_hidden_layers=2, first_k_dense_replace=1,
                     num_attention_heads=4, q_lora_rank=None, kv_lora_rank=144, qk_nope_head_dim=24,
                     qk_rope_head_dim=32, v_head_dim=24, n_routed_experts=16, n_shared_experts=1,
                     num_experts_per_tok=4, n_group=8, topk_group=3,
                     rope_scaling=yarn(16, 1024, 1.0, 0.8), max_position_embeddings=16384,
                     quantization_config={"activation_scheme": "dynamic", "fmt": "e4m3",
                                          "quant_method": "fp8", "weight_block_size": [128, 128]}),
    },
    "v2-f16-grouped": {
        "description": "DeepSeek-V2 (236B-style) layout, F16 weights, q-LoRA, softmax router with "
                       "group_limited_greedy (4 groups of 4, keep 2, group score = max), top-4 of 16, "
                       "norm_topk_prob false, routed_scaling_factor 16.0, 2 shared experts, YaRN mscale = "
                       "mscale_all_dim = 0.707, no MTP",
        "storage": "F16", "seed": 7303, "seq_lens": [1, 7, 24, 70], "n_shards": 2,
        "config": v2(torch_dtype="float16", vocab_size=200, hidden_size=96, intermediate_size=192,
                     moe_intermediate_size=32, num_hidden_layers=3, first_k_dense_replace=1,
                     num_attention_heads=4, q_lora_rank=48, kv_lora_rank=32, qk_nope_head_dim=16,
                     qk_rope_head_dim=8, v_head_dim=24, n_routed_experts=16, n_shared_experts=2,
                     num_experts_per_tok=4, n_group=4, topk_group=2, topk_method="group_limited_greedy",
                     routed_scaling_factor=16.0, rope_scaling=yarn(8, 512, 0.707, 0.707),
                     max_position_embeddings=4096),
    },
    "v3-f32-nogroup": {
        "description": "DeepSeek-V3 layout, F32, a single layer which is MoE (first_k_dense_replace 0), "
                       "n_group 1 / topk_group 1 (no group limit), top-2 of 8, routed_scaling_factor 1.5, "
                       "rms_norm_eps 1e-5, rope_theta 50000, YaRN factor 40 / L0 4096 (low 1, high 3), 1 MTP layer",
        "storage": "F32", "seed": 7404, "seq_lens": [1, 3, 17, 50], "n_shards": 2,
        "config": v3(torch_dtype="float32", vocab_size=128, hidden_size=64, intermediate_size=128,
                     moe_intermediate_size=32, num_hidden_layers=1, first_k_dense_replace=0,
                     num_attention_heads=4, q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=8,
                     qk_rope_head_dim=8, v_head_dim=12, n_routed_experts=8, n_shared_experts=1,
                     num_experts_per_tok=2, n_group=1, topk_group=1, routed_scaling_factor=1.5,
                     rms_norm_eps=1e-5, rope_theta=50000,
                     rope_scaling=yarn(40, 4096, 1.0, 1.0), max_position_embeddings=163840),
    },
    "v2-softmax-normtopk": {
        "description": "DeepSeek-V2 layout, BF16, q-LoRA, softmax router topk_method greedy with "
                       "norm_topk_prob TRUE and routed_scaling_factor 2.0: as in the DeepSeek-V2 hub "
                       "MoEGate the top-k weights are renormalised to sum 1 and NOT multiplied by the factor; "
                       "no rope_scaling, rope_theta 50000, 1 shared expert, no MTP",
        "storage": "BF16", "seed": 7505, "seq_lens": [1, 5, 24, 45], "n_shards": 2,
        "config": v2(torch_dtype="bfloat16", vocab_size=180, hidden_size=112, intermediate_size=160,
                     moe_intermediate_size=24, num_hidden_layers=2, first_k_dense_replace=1,
                     num_attention_heads=3, q_lora_rank=32, kv_lora_rank=40, qk_nope_head_dim=32,
                     qk_rope_head_dim=8, v_head_dim=16, n_routed_experts=10, n_shared_experts=1,
                     num_experts_per_tok=3, n_group=1, topk_group=1, norm_topk_prob=True,
                     routed_scaling_factor=2.0, rope_theta=50000, rope_scaling=None,
                     max_position_embeddings=2048),
    },
}

FP8_LINEARS = ("q_a_proj", "q_b_proj", "q_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj",
               "gate_proj", "up_proj", "down_proj")


# ---------------------------------------------------------------- weights

def tensor_list(c):
    """(name, shape, kind) in module order; kind: emb | lin | norm | bias."""
    H, L = c["hidden_size"], c["num_hidden_layers"]
    heads, nope, rope, vd = c["num_attention_heads"], c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
    ql, kvl = c.get("q_lora_rank"), c["kv_lora_rank"]
    n_mtp = c.get("num_nextn_predict_layers", 0) or 0
    t = [("model.embed_tokens.weight", (c["vocab_size"], H), "emb")]
    for li in range(L + n_mtp):
        p = f"model.layers.{li}."
        if li >= L:
            t += [(p + "embed_tokens.weight", (c["vocab_size"], H), "copy:model.embed_tokens.weight"),
                  (p + "enorm.weight", (H,), "norm"), (p + "hnorm.weight", (H,), "norm"),
                  (p + "eh_proj.weight", (H, 2 * H), "lin")]
        t.append((p + "input_layernorm.weight", (H,), "norm"))
        a = p + "self_attn."
        if ql:
            t += [(a + "q_a_proj.weight", (ql, H), "lin"), (a + "q_a_layernorm.weight", (ql,), "norm"),
                  (a + "q_b_proj.weight", (heads * (nope + rope), ql), "lin")]
        else:
            t.append((a + "q_proj.weight", (heads * (nope + rope), H), "lin"))
        t += [(a + "kv_a_proj_with_mqa.weight", (kvl + rope, H), "lin"),
              (a + "kv_a_layernorm.weight", (kvl,), "norm"),
              (a + "kv_b_proj.weight", (heads * (nope + vd), kvl), "lin"),
              (a + "o_proj.weight", (H, heads * vd), "lin"),
              (p + "post_attention_layernorm.weight", (H,), "norm")]
        m = p + "mlp."
        moe = li >= c["first_k_dense_replace"] and li % c["moe_layer_freq"] == 0
        if not moe:
            I = c["intermediate_size"]
            t += [(m + "gate_proj.weight", (I, H), "lin"), (m + "up_proj.weight", (I, H), "lin"),
                  (m + "down_proj.weight", (H, I), "lin")]
        else:
            E, I = c["n_routed_experts"], c["moe_intermediate_size"]
            t.append((m + "gate.weight", (E, H), "lin"))
            if c["topk_method"] == "noaux_tc":
                t.append((m + "gate.e_score_correction_bias", (E,), "bias"))
            for e in range(E):
                x = f"{m}experts.{e}."
                t += [(x + "gate_proj.weight", (I, H), "lin"), (x + "up_proj.weight", (I, H), "lin"),
                      (x + "down_proj.weight", (H, I), "lin")]
            if c.get("n_shared_experts"):
                S = c["n_shared_experts"] * I
                x = m + "shared_experts."
                t += [(x + "gate_proj.weight", (S, H), "lin"), (x + "up_proj.weight", (S, H), "lin"),
                      (x + "down_proj.weight", (H, S), "lin")]
        if li >= L:
            t += [(p + "shared_head.norm.weight", (H,), "norm"),
                  (p + "shared_head.head.weight", (c["vocab_size"], H), "copy:lm_head.weight")]
    t += [("model.norm.weight", (H,), "norm"), ("lm_head.weight", (c["vocab_size"], H), "lin")]
    # lm_head must exist before the MTP copy refers to it: values are drawn in a first pass below
    return t


def is_fp8_linear(name, c):
    if not name.endswith(".weight"):
        return False
    mod = name.split(".")[-2]
    L = c["num_hidden_layers"]
    if not name.startswith("model.layers.") or mod not in FP8_LINEARS:
        return False
    return int(name.split(".")[2]) <= L


def quant_fp8(w):
    m, n = w.shape
    bm, bn = (m + 127) // 128, (n + 127) // 128
    s = np.zeros((bm, bn), dtype=np.float32)
    q = np.zeros((m, n), dtype=np.uint8)
    for i in range(bm):
        for j in range(bn):
            blk = w[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128]
            sc = np.float32(np.abs(blk).max() / 448.0)
            s[i, j] = sc
            q[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128] = f32_to_e4m3(blk / np.float64(sc))
    return q, s


def make_weights(c, storage, rng, bias_mean=0.0):
    """Returns {name: (dtype, raw array)} in module order (dict order = shard order)."""
    vals = {}
    lst = tensor_list(c)
    for name, shape, kind in lst:
        if kind == "emb":
            vals[name] = rng.standard_normal(shape)
        elif kind == "lin":
            vals[name] = rng.standard_normal(shape) / np.sqrt(shape[1])
        elif kind == "norm":
            vals[name] = 1.0 + 0.1 * rng.standard_normal(shape)
        elif kind == "bias":
            vals[name] = bias_mean + 0.1 * rng.standard_normal(shape)
    out = {}
    for name, shape, kind in lst:
        if kind.startswith("copy:"):
            src = kind[5:]
            out[name] = out[src] if src in out else None
            continue
        w = vals[name].astype(np.float32)
        if storage == "F32" or kind == "bias":
            out[name] = ("F32", w)
        elif storage == "BF16":
            out[name] = ("BF16", f32_to_bf16_bits(w))
        elif storage == "F16":
            out[name] = ("F16", w.astype(np.float16))
        elif storage == "FP8":
            if is_fp8_linear(name, c):
                q, s = quant_fp8(w)
                out[name] = ("F8_E4M3", q)
                out[name + "_scale_inv"] = ("F32", s)
            else:
                out[name] = ("BF16", f32_to_bf16_bits(w))
        else:
            raise ValueError(storage)
    for name, shape, kind in lst:             # copies whose source came later in module order
        if kind.startswith("copy:") and out[name] is None:
            out[name] = out[kind[5:]]
    # keep module order, with each _scale_inv right after its weight
    ordered = {}
    for name, _, _ in lst:
        ordered[name] = out[name]
        if name + "_scale_inv" in out:
            ordered[name + "_scale_inv"] = out[name + "_scale_inv"]
    return ordered


def write_checkpoint(d, c, tensors, n_shards):
    os.makedirs(d, exist_ok=True)
    names = list(tensors)
    nbytes = [tensors[k][1].nbytes for k in names]
    total = sum(nbytes)
    bounds, acc, cur = [], 0, 0
    for i, b in enumerate(nbytes):   # contiguous split by cumulative bytes (a layer may span shards)
        if cur < n_shards - 1 and acc >= total * (cur + 1) / n_shards:
            bounds.append(i)
            cur += 1
        acc += b
    bounds = [0] + bounds + [len(names)]
    wm = {}
    for s in range(n_shards):
        fn = f"model-{s + 1:05d}-of-{n_shards:05d}.safetensors"
        part = {k: tensors[k] for k in names[bounds[s]:bounds[s + 1]]}
        write_safetensors(os.path.join(d, fn), part)
        for k in part:
            wm[k] = fn
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(wm.items()))}, f, indent=2)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
    return [f"model-{s + 1:05d}-of-{n_shards:05d}.safetensors" for s in range(n_shards)], total


# ---------------------------------------------------------------- outputs

def min_margin(res):
    ms = [x.min().item() for x in res["routing_margin"]]
    if res.get("mtp_routing_margin") is not None:
        ms.append(res["mtp_routing_margin"].min().item())
    return min(ms) if ms else float("inf")


def argmax_margin(logits_row):
    t = torch.topk(logits_row, 2).values
    return float(t[0] - t[1])


def acceptable(m, res):
    if min_margin(res) < MIN_MARGIN:
        return False
    if m.c.n_mtp and argmax_margin(res["logits"][-1]) < MIN_ARGMAX_MARGIN:
        return False
    return True


def draw(m, rng, n, fn):
    for attempt in range(200):
        toks = rng.integers(0, m.c.vocab, n).tolist()
        res = fn(m, toks)
        if acceptable(m, res):
            return res, attempt
    return None, None


def f32(x):
    return np.ascontiguousarray(x.numpy() if torch.is_tensor(x) else x, dtype=np.float32)


def i32(x):
    return np.ascontiguousarray(x.numpy() if torch.is_tensor(x) else x, dtype=np.int32)


def generate(name, spec):
    c = spec["config"]
    d = os.path.join(OUT, name)
    for seed_try in range(10):
        seed = spec["seed"] + 1000 * seed_try
        rng = np.random.default_rng(seed)
        if os.path.exists(d):
            shutil.rmtree(d)
        tensors = make_weights(c, spec["storage"], rng, spec.get("bias_mean", 0.0))
        shards, total = write_checkpoint(os.path.join(d, "checkpoint"), c, tensors, spec["n_shards"])
        m = R.Model(os.path.join(d, "checkpoint"), torch.float64)
        cfg = m.c
        moe_layers = [i for i in range(cfg.n_layers) if cfg.is_moe(i)]
        trng = np.random.default_rng(seed + 1)
        seqs, attempts, ok = [], [], True
        for L in spec["seq_lens"]:
            res, att = draw(m, trng, L, R.run_sequence)
            if res is None:
                ok = False
                break
            seqs.append(res)
            attempts.append(att)
        if not ok:
            continue
        dec, att = draw(m, trng, 30, R.run_decode)
        if dec is None:
            continue
        attempts.append(att)
        # every expert of every MoE layer (and of the MTP block) chosen at least once
        cover = True
        E = cfg.n_routed
        for j in range(len(moe_layers)):
            ids = np.concatenate([s["routing"][j].numpy().ravel() for s in seqs] + [dec["routing"][j].numpy().ravel()])
            cover &= len(np.unique(ids)) == E
        if cfg.n_mtp:
            ids = np.concatenate([s["mtp_routing"].numpy().ravel() for s in seqs] + [dec["mtp_routing"].numpy().ravel()])
            cover &= len(np.unique(ids)) == E
        if not cover:
            print(f"  {name}: seed {seed}: not every expert chosen, re-drawing the model")
            continue
        break
    else:
        raise RuntimeError(f"{name}: no tie-free seed found")
    return d, m, seed, seqs, dec, attempts, moe_layers, shards, total


def write_outputs(name, spec, d, m, seqs, dec, moe_layers):
    od = os.path.join(d, "outputs")
    os.makedirs(od, exist_ok=True)
    files = {}
    cfg = m.c
    n = cfg.n_layers

    def put(fname, arr, desc):
        np.save(os.path.join(od, fname + ".npy"), arr)
        files[fname + ".npy"] = {"dtype": str(arr.dtype), "shape": list(arr.shape), "description": desc}

    K = cfg.topk
    for i, s in enumerate(seqs):
        L = len(s["tokens"])
        put(f"seq{i}_tokens", i32(s["tokens"]), f"input token ids, length {L}, positions 0..{L-1}")
        put(f"seq{i}_logits", f32(s["logits"]), "[L, vocab] logits at every position, one forward from position 0")
        if L <= 24:
            put(f"seq{i}_hidden", f32(s["hidden"]),
                f"[{n + 2}, L, hidden] residual stream: [0]=embedding, [1..{n}]=output of block 0..{n-1}, "
                f"[{n + 1}]=after model.norm")
        if moe_layers:
            put(f"seq{i}_routing", i32(torch.stack(s["routing"])),
                f"[n_moe_layers={len(moe_layers)}, L, top_k={K}] routed-expert ids of MoE layers {moe_layers}, "
                "descending selection score; compare as sets")
            put(f"seq{i}_routing_weights", f32(torch.stack(s["routing_weights"])),
                "[n_moe_layers, L, top_k] gate weight of each id in seq*_routing")
            put(f"seq{i}_routing_margin", f32(torch.stack(s["routing_margin"]).clamp(max=1e30)),
                "[n_moe_layers, L] distance of each decision from a tie in selection-score units (min of "
                "k-th chosen minus best unchosen among kept groups, and last kept minus best dropped group score)")
        if cfg.n_mtp:
            put(f"seq{i}_mtp_input_ids", i32(s["mtp_input_ids"]),
                "[L] MTP input token per position: tokens[i+1]; the last is argmax of seq*_logits[L-1]")
            put(f"seq{i}_mtp_logits", f32(s["mtp_logits"]), "[L, vocab] depth-1 MTP logits at every position")
            put(f"seq{i}_mtp_routing", i32(s["mtp_routing"]), f"[L, top_k] expert ids in the MTP block (layer {n})")
            put(f"seq{i}_mtp_routing_weights", f32(s["mtp_routing_weights"]), "[L, top_k] gate weights of seq*_mtp_routing")
    T = len(dec["tokens"])
    put("decode_tokens", i32(dec["tokens"]), f"[{T}] token ids of the incremental-decode test")
    put("decode_logits", f32(dec["logits"]),
        f"[{T}, vocab] rows 0..19: one prefill call on tokens 0..19 at start_pos 0; row p>=20: forward(tokens[p:p+1], start_pos=p) with the KV cache")
    if moe_layers:
        put("decode_routing", i32(torch.stack(dec["routing"])), "[n_moe_layers, T, top_k] experts chosen during prefill + steps")
    if cfg.n_mtp:
        put("decode_mtp_input_ids", i32(dec["mtp_input_ids"]), "[T] decode_tokens[i+1]; last = argmax of decode_logits[T-1]")
        put("decode_mtp_logits", f32(dec["mtp_logits"]),
            "[T, vocab] MTP run incrementally with its own KV cache (prefill of 20 positions, then 1-token steps), fed the main model's post-norm hidden")
        put("decode_mtp_routing", i32(dec["mtp_routing"]), "[T, top_k] expert ids in the MTP block during the decode test")
    return files


PROBES = {
    "rope_rotate_half": ("RoPE pairs (i, i+d/2) on the stored interleaved layout", {"rope_rotate_half": True}),
    "no_yarn_frequencies": ("plain RoPE frequencies instead of YaRN-corrected ones", {"no_yarn_freq": True}),
    "no_yarn_mscale": ("softmax scale without the m^2 factor", {"no_yarn_mscale": True}),
    "official_no_cos_mscale": ("official model.py: no g(f,mscale)/g(f,mscale_all_dim) multiplier on cos/sin",
                               {"rope_cos_mscale": False}),
    "ignore_e_score_correction_bias": ("bias not used in the expert choice", {"ignore_bias": True}),
    "ignore_group_limit": ("top-k over all experts (groups ignored)", {"ignore_groups": True}),
    "group_mask_zero": ("dropped groups masked with 0 instead of -inf (HF hub V3 code)", {"group_mask_zero": True}),
    "no_routed_scaling_factor": ("routed weights not multiplied by routed_scaling_factor", {"no_route_scale": True}),
    "v2_normalise_and_scale": ("deepseek_v2 norm_topk_prob: normalise AND scale (V3 rule) instead of the V2 hub rule",
                               {"v2_norm_convention": "v3"}),
    "mtp_prenorm_hidden": ("MTP fed the hidden before model.norm", {"mtp_prenorm_hidden": True}),
    "mtp_concat_h_first": ("MTP concat order [h; e]", {"mtp_concat_h_first": True}),
}


def probes(d, m, seqs):
    cfg = m.c
    tok = seqs[-1]["tokens"].tolist()
    ref = seqs[-1]
    out = {}
    for key, (what, opt) in PROBES.items():
        if key in ("no_yarn_frequencies", "no_yarn_mscale") and cfg.rs is None:
            continue
        if key == "official_no_cos_mscale" and (cfg.rs is None or m.cos_mul == 1.0):
            continue
        if key in ("ignore_e_score_correction_bias", "group_mask_zero") and cfg.topk_method != "noaux_tc":
            continue
        if key in ("ignore_group_limit", "group_mask_zero") and cfg.n_group <= 1:
            continue
        if key == "no_routed_scaling_factor" and (cfg.rsf == 1.0 or (cfg.model_type == "deepseek_v2" and cfg.norm_topk)):
            continue
        if key == "v2_normalise_and_scale" and not (cfg.model_type == "deepseek_v2" and cfg.norm_topk):
            continue
        if key.startswith("mtp") and not cfg.n_mtp:
            continue
        pm = R.Model(os.path.join(d, "checkpoint"), torch.float64, opt)
        r = R.run_sequence(pm, tok)
        e = {"what": what, "max_abs_logit_diff": float((r["logits"] - ref["logits"]).abs().max())}
        if cfg.n_mtp:
            e["max_abs_mtp_logit_diff"] = float((r["mtp_logits"] - ref["mtp_logits"]).abs().max())
        if r["routing"]:
            a = np.sort(torch.stack(r["routing"]).numpy(), -1)
            b = np.sort(torch.stack(ref["routing"]).numpy(), -1)
            e["expert_set_changed_frac"] = float((a != b).any(-1).mean())
        out[key] = e
    return out


def checks(d, seqs, dec):
    """float32 reference vs float64 expected, and incremental decode vs one full forward."""
    m32 = R.Model(os.path.join(d, "checkpoint"), torch.float32)
    out = {}
    mx = 0.0
    mxm = 0.0
    same = True
    for s in seqs:
        r = R.run_sequence(m32, s["tokens"].tolist())
        mx = max(mx, float((r["logits"].double() - s["logits"]).abs().max()))
        if "mtp_logits" in s:
            mxm = max(mxm, float((r["mtp_logits"].double() - s["mtp_logits"]).abs().max()))
        for a, b in zip(r["routing"], s["routing"]):
            same &= bool((np.sort(a.numpy(), -1) == np.sort(b.numpy(), -1)).all())
    out["reference_float32_vs_expected_logits_max_abs"] = mx
    if mxm:
        out["reference_float32_vs_expected_mtp_logits_max_abs"] = mxm
    out["reference_float32_routing_sets_identical"] = same
    m64 = R.Model(os.path.join(d, "checkpoint"), torch.float64)
    full = R.run_sequence(m64, dec["tokens"].tolist())
    out["decode_incremental_vs_full_forward_max_abs"] = float((full["logits"] - dec["logits"]).abs().max())
    if "mtp_logits" in dec:
        out["decode_mtp_incremental_vs_full_forward_max_abs"] = float((full["mtp_logits"] - dec["mtp_logits"]).abs().max())
    return out


def dir_bytes(d):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)


def main():
    torch.set_num_threads(1)
    names = sys.argv[1:] or list(FIXTURES)
    for name in names:
        spec = FIXTURES[name]
        d, m, seed, seqs, dec, attempts, moe_layers, shards, total = generate(name, spec)
        files = write_outputs(name, spec, d, m, seqs, dec, moe_layers)
        cfg = m.c
        margins = [min_margin(s) for s in seqs] + [min_margin(dec)]
        man = {
            "name": name,
            "description": spec["description"],
            "generator": "tools/ref/make_fixtures.py (expected outputs: tools/ref/deepseek_ref.py, float64, stored as float32)",
            "storage": spec["storage"],
            "seed": seed,
            "token_redraws": attempts,
            "seq_lens": [len(s["tokens"]) for s in seqs],
            "decode": {"prefill": 20, "steps": 10},
            "init": {"linear": "N(0, 1/fan_in)", "embedding": "N(0, 1)", "norm": "1 + N(0, 0.1)",
                     "e_score_correction_bias": f"N({spec.get('bias_mean', 0.0)}, 0.1)"},
            "moe_layers": moe_layers,
            "mtp_layers": list(range(cfg.n_layers, cfg.n_layers + cfg.n_mtp)),
            "softmax_scale": m.softmax_scale,
            "rope_cos_sin_multiplier": m.cos_mul,
            "yarn_low_high": list(getattr(m, "yarn_low_high", [])) or None,
            "inv_freq": [float(x) for x in m.inv_freq],
            "min_routing_margin": min(margins),
            "min_mtp_argmax_margin": (min([argmax_margin(s["logits"][-1]) for s in seqs] +
                                          [argmax_margin(dec["logits"][-1])]) if cfg.n_mtp else None),
            "routing_margin_threshold": MIN_MARGIN,
            "checkpoint": {"dir": "checkpoint", "files": shards, "total_size": total,
                           "n_tensors": len(m.ck.raw)},
            "files": files,
            "checks": checks(d, seqs, dec),
            "sensitivity_sequence": f"seq{len(seqs) - 1}",
            "sensitivity": probes(d, m, seqs),
            "tolerance": {"logits_max_abs": 1e-4, "routing": "identical sets",
                          "routing_weights_max_abs": 1e-5 * max(1.0, cfg.rsf)},
        }
        with open(os.path.join(d, "manifest.json"), "w") as f:
            json.dump(man, f, indent=1)
        sz = dir_bytes(d)
        print(f"{name}: seed {seed}, {sz} bytes, min margin {man['min_routing_margin']:.2e}, "
              f"redraws {attempts}, f32 ref {man['checks']['reference_float32_vs_expected_logits_max_abs']:.1e}")
        for k, v in man["sensitivity"].items():
            print(f"    probe {k}: {v['max_abs_logit_diff']:.3g}" +
                  (f" (mtp {v['max_abs_mtp_logit_diff']:.3g})" if "max_abs_mtp_logit_diff" in v else ""))
        if sz > MAX_FIXTURE_BYTES:
            print(f"  WARNING: {name} is {sz} bytes > {MAX_FIXTURE_BYTES}")


if __name__ == "__main__":
    main()

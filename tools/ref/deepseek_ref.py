#!/usr/bin/python3
"""Independent PyTorch reference of the DeepSeek-V3 / V2 forward pass (ds3 test fixtures).

Reads an HF checkpoint folder (config.json + sharded safetensors, F32/BF16/F16/F8_E4M3 + 128x128
weight_scale_inv) with its own reader (st.py) and computes, in float64 (default) or float32:
embedding, RMSNorm, MLA (q-LoRA or q_proj, interleaved-pair RoPE, YaRN), dense SwiGLU, MoE routers
(sigmoid/noaux_tc, softmax/greedy, softmax/group_limited_greedy), shared experts, final norm, lm_head,
and the depth-1 MTP module, with a KV cache for incremental decoding.

Conventions (see tools/ref/README.md for the why):
  * RoPE pairs are (2j, 2j+1) (checkpoint / official layout); YaRN inv_freq as in official/HF code.
  * softmax scale = qk_head_dim^-0.5 * m^2, m = 0.1*mscale_all_dim*ln(factor)+1 when rope_scaling is yarn.
  * cos/sin multiplier g(f, mscale)/g(f, mscale_all_dim) as the HF hub code does (1.0 when equal);
    opts["rope_cos_mscale"] = False gives the official model.py behaviour (no multiplier).
  * Router: V3 semantics (deepseek_v3): normalise if norm_topk_prob, then always * routed_scaling_factor.
    V2 hub semantics (deepseek_v2): if top_k>1 and norm_topk_prob: normalise (NO scaling) else * factor.
    Dropped groups are masked with -inf (official code), group score = sum of top-2 biased scores when
    e_score_correction_bias exists (noaux_tc), else max.
  * MTP: x = eh_proj(cat(enorm(emb(next)), hnorm(h_postnorm))), block L, shared_head.norm/head.

Usage as a module:  m = Model(ckpt_dir); out = m.forward(tokens)   (see run_sequence / run_decode)
"""
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from st import Checkpoint  # noqa: E402

DEFAULT_OPTS = {
    "rope_cos_mscale": True,      # HF: multiply cos/sin by g(f,mscale)/g(f,mscale_all_dim)
    "rope_rotate_half": False,    # probe: wrong (i, i+d/2) pairing on the stored layout
    "no_yarn_freq": False,        # probe: plain RoPE frequencies
    "no_yarn_mscale": False,      # probe: softmax scale without m^2
    "ignore_bias": False,         # probe: e_score_correction_bias not used for selection
    "ignore_groups": False,       # probe: group limit ignored
    "no_route_scale": False,      # probe: routed_scaling_factor forgotten
    "v2_norm_convention": "hub",  # 'hub' (normalise, no scale) or 'v3' (normalise and scale) for deepseek_v2
    "group_mask_zero": False,     # probe: mask dropped groups with 0 instead of -inf (HF hub V3 code)
    "mtp_prenorm_hidden": False,  # probe: MTP fed the hidden before model.norm
    "mtp_concat_h_first": False,  # probe: MTP concat [h; e]
}


def yarn_get_mscale(scale, mscale):
    if scale <= 1:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


class Cfg:
    def __init__(self, c):
        self.raw = c
        g = c.get
        self.model_type = g("model_type", "deepseek_v3")
        self.vocab = c["vocab_size"]
        self.H = c["hidden_size"]
        self.inter = g("intermediate_size")
        self.moe_inter = g("moe_intermediate_size")
        self.n_layers = c["num_hidden_layers"]
        self.first_dense = g("first_k_dense_replace", 0) or 0
        self.moe_freq = g("moe_layer_freq", 1) or 1
        self.heads = c["num_attention_heads"]
        self.q_lora = g("q_lora_rank") or 0
        self.kv_lora = c["kv_lora_rank"]
        self.nope = c["qk_nope_head_dim"]
        self.rope = c["qk_rope_head_dim"]
        self.vdim = c["v_head_dim"]
        self.n_routed = g("n_routed_experts")
        self.n_shared = g("n_shared_experts") or 0
        self.topk = g("num_experts_per_tok")
        self.n_group = g("n_group", 1) or 1
        self.topk_group = g("topk_group", 1) or 1
        self.scoring = g("scoring_func", "softmax")
        self.topk_method = g("topk_method", "greedy")
        if self.topk_method == "gready":
            self.topk_method = "greedy"
        self.norm_topk = bool(g("norm_topk_prob", False))
        self.rsf = float(g("routed_scaling_factor", 1.0) or 1.0)
        self.eps = float(g("rms_norm_eps", 1e-6))
        self.theta = float(g("rope_theta", 10000.0))
        self.rs = g("rope_scaling")
        self.n_mtp = g("num_nextn_predict_layers", 0) or 0
        if g("hidden_act", "silu") != "silu":
            raise ValueError("hidden_act must be silu")
        if self.rs is not None:
            t = self.rs.get("type", self.rs.get("rope_type"))
            if t != "yarn":
                raise ValueError(f"rope_scaling type {t} not supported")

    def is_moe(self, i):
        return (self.n_routed is not None and i >= self.first_dense and i % self.moe_freq == 0)


class Model:
    def __init__(self, folder, dtype=torch.float64, opts=None):
        self.ck = Checkpoint(folder)
        self.c = Cfg(self.ck.config)
        self.dt = dtype
        self.o = dict(DEFAULT_OPTS)
        if opts:
            self.o.update(opts)
        self._w = {}
        self._rope_tables()

    # ------------------------------------------------------------ weights
    def W(self, name):
        if name not in self._w:
            self._w[name] = torch.from_numpy(self.ck.get(name)).to(self.dt)
        return self._w[name]

    def has(self, name):
        return self.ck.has(name)

    # ------------------------------------------------------------ basics
    def rms(self, x, name):
        w = self.W(name)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.c.eps) * w

    def lin(self, x, name):
        return x @ self.W(name).t()

    def mlp(self, x, pre):
        g = self.lin(x, pre + "gate_proj.weight")
        u = self.lin(x, pre + "up_proj.weight")
        return self.lin(torch.nn.functional.silu(g) * u, pre + "down_proj.weight")

    # ------------------------------------------------------------ RoPE / YaRN
    def _rope_tables(self):
        c = self.c
        d = c.rope
        base = self.theta_pow = c.theta ** (-(np.arange(0, d, 2, dtype=np.float64) / d))
        inv = base.copy()
        self.softmax_scale = (c.nope + c.rope) ** -0.5
        self.cos_mul = 1.0
        if c.rs is not None:
            f = float(c.rs["factor"])
            L0 = float(c.rs.get("original_max_position_embeddings", 4096))
            bf = float(c.rs.get("beta_fast", 32))
            bs = float(c.rs.get("beta_slow", 1))
            ms = c.rs.get("mscale", 1.0)
            msa = c.rs.get("mscale_all_dim", 0.0)

            def cdim(r):
                return d * math.log(L0 / (r * 2 * math.pi)) / (2 * math.log(c.theta))
            low = max(math.floor(cdim(bf)), 0)
            high = min(math.ceil(cdim(bs)), d - 1)
            if low == high:
                high += 0.001
            ramp = np.clip((np.arange(d // 2, dtype=np.float64) - low) / (high - low), 0, 1)
            if not self.o["no_yarn_freq"]:
                inv = base / f * ramp + base * (1 - ramp)
            self.yarn_low_high = (low, high)
            if msa and not self.o["no_yarn_mscale"]:
                m = yarn_get_mscale(f, msa)
                self.softmax_scale *= m * m
            if self.o["rope_cos_mscale"]:
                self.cos_mul = yarn_get_mscale(f, ms) / yarn_get_mscale(f, msa)
        self.inv_freq = inv

    def rope(self, x, pos):
        """x: (..., T, d) with the T axis matching pos (T,). Interleaved pairs (2j, 2j+1)."""
        ang = torch.from_numpy(np.outer(np.asarray(pos, dtype=np.float64), self.inv_freq)).to(self.dt)
        cos = torch.cos(ang) * self.cos_mul
        sin = torch.sin(ang) * self.cos_mul
        d = x.shape[-1]
        if self.o["rope_rotate_half"]:
            x1, x2 = x[..., : d // 2], x[..., d // 2:]
            return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)
        xe, xo = x[..., 0::2], x[..., 1::2]
        ye = xe * cos - xo * sin
        yo = xe * sin + xo * cos
        return torch.stack([ye, yo], -1).flatten(-2)

    # ------------------------------------------------------------ MLA (naive cache: per-head k and v)
    def mla(self, x, li, pos, cache):
        c = self.c
        p = f"model.layers.{li}.self_attn."
        T = x.shape[0]
        if c.q_lora:
            q = self.lin(self.rms(self.lin(x, p + "q_a_proj.weight"), p + "q_a_layernorm.weight"),
                         p + "q_b_proj.weight")
        else:
            q = self.lin(x, p + "q_proj.weight")
        q = q.view(T, c.heads, c.nope + c.rope)
        q_nope, q_pe = q[..., : c.nope], q[..., c.nope:]
        q_pe = self.rope(q_pe.transpose(0, 1), pos).transpose(0, 1)          # (T, h, rope)
        kv = self.lin(x, p + "kv_a_proj_with_mqa.weight")
        ckv, k_pe = kv[:, : c.kv_lora], kv[:, c.kv_lora:]
        k_pe = self.rope(k_pe, pos)                                           # (T, rope)
        kvb = self.lin(self.rms(ckv, p + "kv_a_layernorm.weight"), p + "kv_b_proj.weight")
        kvb = kvb.view(T, c.heads, c.nope + c.vdim)
        k_nope, v = kvb[..., : c.nope], kvb[..., c.nope:]
        k = torch.cat([k_nope, k_pe[:, None, :].expand(T, c.heads, c.rope)], -1)
        qf = torch.cat([q_nope, q_pe], -1)
        if cache is not None:
            if "k" in cache:
                k = torch.cat([cache["k"], k], 0)
                v = torch.cat([cache["v"], v], 0)
            cache["k"], cache["v"] = k, v
        S = k.shape[0]
        kpos = np.arange(S)
        sc = torch.einsum("thd,shd->hts", qf, k) * self.softmax_scale
        mask = torch.from_numpy(kpos[None, :] > np.asarray(pos)[:, None])
        sc = sc.masked_fill(mask[None], float("-inf"))
        pr = torch.softmax(sc, -1)
        o = torch.einsum("hts,shd->thd", pr, v).reshape(T, c.heads * c.vdim)
        return self.lin(o, p + "o_proj.weight")

    # ------------------------------------------------------------ router + MoE
    def route(self, u, li):
        """Returns ids (T,K) in descending selection order, weights (T,K), margin (T,)."""
        c = self.c
        p = f"model.layers.{li}.mlp.gate."
        logits = u @ self.W(p + "weight").t()
        if c.scoring == "sigmoid":
            s = torch.sigmoid(logits)
        elif c.scoring == "softmax":
            s = torch.softmax(logits, -1)
        else:
            raise ValueError(f"scoring_func {c.scoring}")
        sel = s.clone()
        has_bias = self.has(p + "e_score_correction_bias") and c.topk_method == "noaux_tc"
        if has_bias and not self.o["ignore_bias"]:
            sel = s + self.W(p + "e_score_correction_bias")
        T, E = s.shape
        gmargin = torch.full((T,), float("inf"), dtype=self.dt)
        grouped = (c.topk_method in ("noaux_tc", "group_limited_greedy") and c.n_group > 1
                   and not self.o["ignore_groups"])
        if grouped:
            gs = sel.view(T, c.n_group, E // c.n_group)
            if has_bias:
                gsc = gs.topk(2, -1).values.sum(-1)
            else:
                gsc = gs.max(-1).values
            gsorted = gsc.sort(-1, descending=True).values
            if c.topk_group < c.n_group:
                gmargin = gsorted[:, c.topk_group - 1] - gsorted[:, c.topk_group]
            gidx = gsc.topk(c.topk_group, -1).indices
            keep = torch.zeros(T, c.n_group, dtype=torch.bool)
            keep.scatter_(1, gidx, True)
            keep = keep[:, :, None].expand(T, c.n_group, E // c.n_group).reshape(T, E)
            sel = sel.masked_fill(~keep, 0.0 if self.o["group_mask_zero"] else float("-inf"))
        top = sel.topk(c.topk, -1)
        ids = top.indices
        ssorted = sel.sort(-1, descending=True).values
        if c.topk < E:
            nxt = ssorted[:, c.topk]
            emargin = torch.where(torch.isinf(nxt), torch.full_like(nxt, float("inf")),
                                  ssorted[:, c.topk - 1] - nxt)
        else:
            emargin = torch.full((T,), float("inf"), dtype=self.dt)
        margin = torch.minimum(emargin, gmargin)
        w = s.gather(1, ids)
        if c.model_type == "deepseek_v2" and self.o["v2_norm_convention"] == "hub":
            if c.topk > 1 and c.norm_topk:
                w = w / w.sum(-1, keepdim=True)
            elif not self.o["no_route_scale"]:
                w = w * c.rsf
        else:
            if c.norm_topk:
                w = w / w.sum(-1, keepdim=True)
            if not self.o["no_route_scale"]:
                w = w * c.rsf
        return ids, w, margin

    def moe(self, u, li):
        c = self.c
        ids, w, margin = self.route(u, li)
        out = torch.zeros_like(u)
        for e in torch.unique(ids).tolist():
            tok, slot = (ids == e).nonzero(as_tuple=True)
            y = self.mlp(u[tok], f"model.layers.{li}.mlp.experts.{e}.")
            out.index_add_(0, tok, y * w[tok, slot][:, None])
        if c.n_shared:
            out = out + self.mlp(u, f"model.layers.{li}.mlp.shared_experts.")
        return out, (ids, w, margin)

    # ------------------------------------------------------------ block / model
    def block(self, h, li, pos, cache):
        p = f"model.layers.{li}."
        h = h + self.mla(self.rms(h, p + "input_layernorm.weight"), li, pos, cache)
        u = self.rms(h, p + "post_attention_layernorm.weight")
        if self.c.is_moe(li):
            y, r = self.moe(u, li)
        else:
            y, r = self.mlp(u, p + "mlp."), None
        return h + y, r

    def forward(self, tokens, start_pos=0, cache=None):
        """tokens: 1-D ints at positions start_pos.. ; cache: list per layer (dicts) or None.
        Returns dict(logits (T,V), hidden [(T,H)]*(n+2), routing [(ids,w,margin)] per MoE layer,
        h_pre (T,H) before model.norm, h_post (T,H) after it)."""
        c = self.c
        tokens = torch.as_tensor(np.asarray(tokens, dtype=np.int64))
        pos = np.arange(start_pos, start_pos + len(tokens))
        h = self.W("model.embed_tokens.weight")[tokens]
        hid = [h]
        routing = []
        for li in range(c.n_layers):
            h, r = self.block(h, li, pos, None if cache is None else cache[li])
            hid.append(h)
            if r is not None:
                routing.append(r)
        hp = self.rms(h, "model.norm.weight")
        hid.append(hp)
        logits = self.lin(hp, "lm_head.weight")
        return {"logits": logits, "hidden": hid, "routing": routing, "h_pre": h, "h_post": hp}

    def mtp(self, h_prev, next_ids, start_pos=0, cache=None):
        """Depth-1 MTP: h_prev (T,H) = main hidden after model.norm; next_ids (T,) tokens[i+1]."""
        c = self.c
        L = c.n_layers
        p = f"model.layers.{L}."
        ids = torch.as_tensor(np.asarray(next_ids, dtype=np.int64))
        pos = np.arange(start_pos, start_pos + len(ids))
        emb_name = p + "embed_tokens.weight" if self.has(p + "embed_tokens.weight") else "model.embed_tokens.weight"
        e = self.rms(self.W(emb_name)[ids], p + "enorm.weight")
        hh = self.rms(h_prev, p + "hnorm.weight")
        x = torch.cat([hh, e], -1) if self.o["mtp_concat_h_first"] else torch.cat([e, hh], -1)
        x = self.lin(x, p + "eh_proj.weight")
        y, r = self.block(x, L, pos, cache)
        head = p + "shared_head.head.weight" if self.has(p + "shared_head.head.weight") else "lm_head.weight"
        logits = self.lin(self.rms(y, p + "shared_head.norm.weight"), head)
        return {"logits": logits, "routing": r}


# ---------------------------------------------------------------- the fixture recipes

def run_sequence(m, tokens):
    """Full forward from position 0 (+ MTP when the model has it). Returns numpy dict in golden names."""
    out = m.forward(tokens)
    res = {
        "tokens": np.asarray(tokens, dtype=np.int32),
        "logits": out["logits"],
        "hidden": torch.stack(out["hidden"]),
        "routing": [r[0] for r in out["routing"]],
        "routing_weights": [r[1] for r in out["routing"]],
        "routing_margin": [r[2] for r in out["routing"]],
    }
    if m.c.n_mtp:
        last = int(torch.argmax(out["logits"][-1]))
        ids = np.concatenate([np.asarray(tokens[1:], dtype=np.int64), [last]])
        hin = out["h_pre"] if m.o["mtp_prenorm_hidden"] else out["h_post"]
        mt = m.mtp(hin, ids)
        res["mtp_input_ids"] = ids.astype(np.int32)
        res["mtp_logits"] = mt["logits"]
        res["mtp_routing"] = mt["routing"][0] if mt["routing"] else None
        res["mtp_routing_weights"] = mt["routing"][1] if mt["routing"] else None
        res["mtp_routing_margin"] = mt["routing"][2] if mt["routing"] else None
    return res


def run_decode(m, tokens, prefill=20):
    """Prefill tokens[:prefill] at start_pos 0, then one token per call with the KV cache."""
    c = m.c
    T = len(tokens)
    cache = [dict() for _ in range(c.n_layers)]
    logits, hp, hpre = [], [], []
    routing = None
    chunks = [(0, prefill)] + [(p, p + 1) for p in range(prefill, T)]
    for a, b in chunks:
        out = m.forward(tokens[a:b], start_pos=a, cache=cache)
        logits.append(out["logits"])
        hp.append(out["h_post"])
        hpre.append(out["h_pre"])
        rr = [(r[0], r[1], r[2]) for r in out["routing"]]
        if routing is None:
            routing = [[[r[0]], [r[1]], [r[2]]] for r in rr]
        else:
            for acc, r in zip(routing, rr):
                for j in range(3):
                    acc[j].append(r[j])
    res = {
        "tokens": np.asarray(tokens, dtype=np.int32),
        "logits": torch.cat(logits),
        "routing": [torch.cat(r[0]) for r in routing],
        "routing_weights": [torch.cat(r[1]) for r in routing],
        "routing_margin": [torch.cat(r[2]) for r in routing],
    }
    if c.n_mtp:
        H = torch.cat(hpre if m.o["mtp_prenorm_hidden"] else hp)
        last = int(torch.argmax(res["logits"][-1]))
        ids = np.concatenate([np.asarray(tokens[1:], dtype=np.int64), [last]])
        mcache = {}
        ml, mr = [], []
        for a, b in chunks:
            mt = m.mtp(H[a:b], ids[a:b], start_pos=a, cache=mcache)
            ml.append(mt["logits"])
            mr.append(mt["routing"])
        res["mtp_input_ids"] = ids.astype(np.int32)
        res["mtp_logits"] = torch.cat(ml)
        if mr[0] is not None:
            res["mtp_routing"] = torch.cat([r[0] for r in mr])
            res["mtp_routing_weights"] = torch.cat([r[1] for r in mr])
            res["mtp_routing_margin"] = torch.cat([r[2] for r in mr])
    return res


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="run the reference on a checkpoint and print logits")
    ap.add_argument("ckpt")
    ap.add_argument("tokens", nargs="+", type=int)
    ap.add_argument("--f32", action="store_true")
    a = ap.parse_args()
    mm = Model(a.ckpt, torch.float32 if a.f32 else torch.float64)
    r = run_sequence(mm, a.tokens)
    np.set_printoptions(precision=5, suppress=True, linewidth=150)
    print("logits[-1][:16]", r["logits"][-1][:16].numpy())
    print("argmax", r["logits"].argmax(-1).numpy())

#!/usr/bin/env python3
"""train_ref.py -- PyTorch reference for one ds3 training step (tests/test_train_ref.c).

Builds a tiny DeepSeek-V3-architecture model straight from the equations of the spec
(spec/deepseek-v3.md sections 2-7: naive MLA with interleaved RoPE and YaRN, sigmoid router with
a selection-only bias and group-limited top-k, shared + routed SwiGLU experts, MTP depth 1 with
shared embedding and head, the sequence-wise balance loss), runs one forward/backward with
autograd and one torch.optim.AdamW step (weight decay on matrices only), and writes:

  OUT/config.json                 the HF config
  OUT/init/model.safetensors      the initial weights (HF names, f32)
  OUT/ref.safetensors             inputs, targets, losses, every gradient ("grad.<name>"),
                                  every parameter after the step ("step.<name>")

Usage: /usr/bin/python3 tools/train_ref/train_ref.py tests/fixtures/train/onestep
Never needed at test time.
"""
import json, math, os, struct, sys
import numpy as np
import torch

torch.manual_seed(0)
np.random.seed(0)

CFG = {
    "model_type": "deepseek_v3", "architectures": ["DeepseekV3ForCausalLM"],
    "vocab_size": 48, "hidden_size": 32, "intermediate_size": 40, "moe_intermediate_size": 12,
    "num_hidden_layers": 2, "first_k_dense_replace": 1, "moe_layer_freq": 1,
    "num_attention_heads": 2, "num_key_value_heads": 2, "q_lora_rank": 20, "kv_lora_rank": 16,
    "qk_nope_head_dim": 8, "qk_rope_head_dim": 8, "v_head_dim": 8,
    "n_routed_experts": 8, "n_shared_experts": 1, "num_experts_per_tok": 2, "n_group": 4, "topk_group": 2,
    "routed_scaling_factor": 2.5, "norm_topk_prob": True, "scoring_func": "sigmoid", "topk_method": "noaux_tc",
    "num_nextn_predict_layers": 1, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 64,
    "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4, "beta_fast": 32.0,
                     "beta_slow": 1.0, "mscale": 0.9, "mscale_all_dim": 0.8},
    "hidden_act": "silu", "tie_word_embeddings": False, "bos_token_id": 0, "eos_token_id": 1,
    "torch_dtype": "float32",
}
B, T = 2, 8
ALPHA, LAMBDA = 0.01, 0.3
ADAM = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
STD = 0.1

c = CFG
d, V, L = c["hidden_size"], c["vocab_size"], c["num_hidden_layers"]
H, dn, dr, dv = c["num_attention_heads"], c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
dq, rq, rkv = dn + dr, c["q_lora_rank"], c["kv_lora_rank"]
Nr, K, I, Ns = c["n_routed_experts"], c["num_experts_per_tok"], c["moe_intermediate_size"], c["n_shared_experts"]
eps = c["rms_norm_eps"]


def yarn_g(s, m):
    return 1.0 if s <= 1 else 0.1 * m * math.log(s) + 1.0


def rope_params():
    rs = c["rope_scaling"]
    base, D = c["rope_theta"], dr
    f32 = np.float32
    L0, fac = rs["original_max_position_embeddings"], rs["factor"]
    dfast = D * math.log(L0 / (rs["beta_fast"] * 2 * math.pi)) / (2 * math.log(base))
    dslow = D * math.log(L0 / (rs["beta_slow"] * 2 * math.pi)) / (2 * math.log(base))
    low, high = max(math.floor(dfast), 0), min(math.ceil(dslow), D - 1)
    if low == high:
        high += 0.001
    inv = []
    for i in range(D // 2):
        f = f32(1.0 / base ** (2 * i / D))
        ramp = f32(min(max((i - low) / (high - low), 0.0), 1.0))
        f = f / f32(fac) * ramp + f * (f32(1.0) - ramp)
        inv.append(f32(f))
    scale = (1.0 / math.sqrt(dq)) * yarn_g(fac, rs["mscale_all_dim"]) ** 2
    cs = yarn_g(fac, rs["mscale"]) / yarn_g(fac, rs["mscale_all_dim"])
    return np.array(inv, dtype=np.float32), np.float32(scale), np.float32(cs)


INV, SCALE, CS = rope_params()
pos = np.arange(T, dtype=np.float32)
ang = pos[:, None] * INV[None, :]                         # f32 like the C code
COS = torch.tensor(np.cos(ang.astype(np.float64)).astype(np.float32) * CS)
SIN = torch.tensor(np.sin(ang.astype(np.float64)).astype(np.float32) * CS)


def rope(x):  # x (..., T, [heads,] dr) interleaved pairs; T is dim -2 or -3
    x0, x1 = x[..., 0::2], x[..., 1::2]
    cs, sn = (COS, SIN) if x.dim() == 3 else (COS[:, None, :], SIN[:, None, :])
    y0, y1 = x0 * cs - x1 * sn, x0 * sn + x1 * cs
    return torch.stack([y0, y1], dim=-1).flatten(-2)


# ---- parameters (HF names) ----
names, params = [], {}


def P(name, *shape, norm=False, bias=False):
    if bias:
        t = torch.empty(*shape).uniform_(-0.05, 0.05)
    elif norm:
        t = 1.0 + 0.1 * torch.randn(*shape)
    else:
        t = STD * torch.randn(*shape)
    params[name] = t.float().requires_grad_(not bias)
    names.append(name)


P("model.embed_tokens.weight", V, d)
for l in range(L + 1):
    p = f"model.layers.{l}."
    if l == L:
        P(p + "enorm.weight", d, norm=True); P(p + "hnorm.weight", d, norm=True); P(p + "eh_proj.weight", d, 2 * d)
    P(p + "input_layernorm.weight", d, norm=True)
    P(p + "self_attn.q_a_proj.weight", rq, d); P(p + "self_attn.kv_a_proj_with_mqa.weight", rkv + dr, d)
    P(p + "self_attn.q_a_layernorm.weight", rq, norm=True); P(p + "self_attn.q_b_proj.weight", H * dq, rq)
    P(p + "self_attn.kv_a_layernorm.weight", rkv, norm=True); P(p + "self_attn.kv_b_proj.weight", H * (dn + dv), rkv)
    P(p + "self_attn.o_proj.weight", d, H * dv)
    P(p + "post_attention_layernorm.weight", d, norm=True)
    if l < c["first_k_dense_replace"]:
        Id = c["intermediate_size"]
        P(p + "mlp.gate_proj.weight", Id, d); P(p + "mlp.up_proj.weight", Id, d); P(p + "mlp.down_proj.weight", d, Id)
    else:
        P(p + "mlp.gate.weight", Nr, d); P(p + "mlp.gate.e_score_correction_bias", Nr, bias=True)
        for e in range(Nr):
            q = p + f"mlp.experts.{e}."
            P(q + "gate_proj.weight", I, d); P(q + "up_proj.weight", I, d); P(q + "down_proj.weight", d, I)
        q = p + "mlp.shared_experts."
        P(q + "gate_proj.weight", Ns * I, d); P(q + "up_proj.weight", Ns * I, d); P(q + "down_proj.weight", d, Ns * I)
    if l == L:
        P(p + "shared_head.norm.weight", d, norm=True)
P("model.norm.weight", d, norm=True)
P("lm_head.weight", V, d)
W = params


def rms(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def mla(p, x):  # x (B, T, d)
    qa = x @ W[p + "q_a_proj.weight"].T
    q = rms(qa, W[p + "q_a_layernorm.weight"]) @ W[p + "q_b_proj.weight"].T
    q = q.view(B, T, H, dq)
    q = torch.cat([q[..., :dn], rope(q[..., dn:])], -1)
    kv = x @ W[p + "kv_a_proj_with_mqa.weight"].T
    cn = rms(kv[..., :rkv], W[p + "kv_a_layernorm.weight"])
    kpe = rope(kv[..., rkv:])                                         # (B, T, dr)
    kvb = (cn @ W[p + "kv_b_proj.weight"].T).view(B, T, H, dn + dv)
    k = torch.cat([kvb[..., :dn], kpe[:, :, None, :].expand(B, T, H, dr)], -1)
    v = kvb[..., dn:]
    s = torch.einsum("bthd,bshd->bhts", q, k) * SCALE
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    s = s.masked_fill(mask, float("-inf")).softmax(-1)
    o = torch.einsum("bhts,bshd->bthd", s, v).reshape(B, T, H * dv)
    return o @ W[p + "o_proj.weight"].T


def swiglu(p, x):
    return (torch.nn.functional.silu(x @ W[p + "gate_proj.weight"].T) * (x @ W[p + "up_proj.weight"].T)) @ W[p + "down_proj.weight"].T


LOADS = []


def moe(p, x):  # x (B, T, d) -> out, balance loss
    xf = x.reshape(-1, d)
    logits = xf @ W[p + "gate.weight"].T
    s = logits.sigmoid()
    sel = s.detach() + W[p + "gate.e_score_correction_bias"]
    G = c["n_group"]
    gs = sel.view(-1, G, Nr // G).topk(2, -1).values.sum(-1)
    keep = torch.zeros_like(gs, dtype=torch.bool).scatter_(1, gs.topk(c["topk_group"], -1).indices, True)
    sel = sel.masked_fill(~keep[:, :, None].expand(-1, G, Nr // G).reshape(-1, Nr), float("-inf"))
    ids = sel.topk(K, -1).indices                                      # (N, K)
    w = s.gather(1, ids)
    w = w / (w.sum(-1, keepdim=True) + 1e-20) * c["routed_scaling_factor"]
    out = swiglu(p + "shared_experts.", xf)
    routed = torch.zeros_like(xf)
    for e in range(Nr):
        tok, kk = (ids == e).nonzero(as_tuple=True)
        if len(tok):
            routed = routed.index_add(0, tok, w[tok, kk, None] * swiglu(p + f"experts.{e}.", xf[tok]))
    out = out + routed
    LOADS.append(torch.bincount(ids.flatten(), minlength=Nr))
    # sequence-wise balance loss (spec 7.2), averaged over sequences
    sn = (s / s.sum(-1, keepdim=True)).view(B, T, Nr)
    cnt = torch.zeros(B, Nr).scatter_add_(1, ids.view(B, T * K), torch.ones(B, T * K))
    f = cnt * Nr / (K * T)
    bal = ALPHA * (f * sn.mean(1)).sum(-1).mean()
    return out.view(B, T, d), bal


def block(l, h):
    p = f"model.layers.{l}."
    h = h + mla(p + "self_attn.", rms(h, W[p + "input_layernorm.weight"]))
    x = rms(h, W[p + "post_attention_layernorm.weight"])
    if l < c["first_k_dense_replace"]:
        return h + swiglu(p + "mlp.", x), 0.0
    y, bal = moe(p + "mlp.", x)
    return h + y, bal


toks = torch.randint(0, V, (B, T + 1))
inp, tgt = toks[:, :T], toks[:, 1:]
E, Wh = W["model.embed_tokens.weight"], W["lm_head.weight"]
h, bal = E[inp], 0.0
for l in range(L):
    h, b = block(l, h)
    bal = bal + b
hf = rms(h, W["model.norm.weight"])
loss = torch.nn.functional.cross_entropy((hf @ Wh.T).reshape(-1, V), tgt.reshape(-1))
p = f"model.layers.{L}."
x = torch.cat([rms(E[tgt], W[p + "enorm.weight"]), rms(hf, W[p + "hnorm.weight"])], -1) @ W[p + "eh_proj.weight"].T
z, b = block(L, x)
bal = bal + b
zl = rms(z, W[p + "shared_head.norm.weight"]) @ Wh.T                 # (B, T, V)
mtp = torch.nn.functional.cross_entropy(zl[:, :T - 1].reshape(-1, V), tgt[:, 1:].reshape(-1))
total = loss + LAMBDA * mtp + bal
total.backward()
print(f"loss {loss.item():.6f} mtp {mtp.item():.6f} bal {bal.item():.6f} total {total.item():.6f}")

for n in names:  # an expert that got no token has no .grad: a zero gradient (still decayed, as in C)
    if W[n].requires_grad and W[n].grad is None:
        W[n].grad = torch.zeros_like(W[n])
grads = {n: W[n].grad.clone() for n in names if W[n].requires_grad}
decay = [W[n] for n in names if W[n].requires_grad and W[n].dim() == 2]
nodecay = [W[n] for n in names if W[n].requires_grad and W[n].dim() == 1]
init = {n: W[n].detach().clone() for n in names}
opt = torch.optim.AdamW([{"params": decay}, {"params": nodecay, "weight_decay": 0.0}], foreach=False, **ADAM)
opt.step()


def st_write(path, tensors):
    hdr, off, blobs = {}, 0, []
    for n, t in tensors.items():
        a = t.detach().cpu().numpy()
        dt = {np.float32: "F32", np.int32: "I32"}[a.dtype.type]
        b = np.ascontiguousarray(a).tobytes()
        hdr[n] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(hdr).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


out = sys.argv[1]
os.makedirs(os.path.join(out, "init"), exist_ok=True)
with open(os.path.join(out, "config.json"), "w") as f:
    json.dump(CFG, f, indent=1)
with open(os.path.join(out, "init", "config.json"), "w") as f:
    json.dump(CFG, f, indent=1)
st_write(os.path.join(out, "init", "model.safetensors"), init)
ref = {"inp": inp.int().contiguous(), "tgt": tgt.int().contiguous(),
       "losses": torch.tensor([loss.item(), mtp.item(), float(bal), total.item()], dtype=torch.float32),
       "settings": torch.tensor([ALPHA, LAMBDA, ADAM["lr"], ADAM["betas"][0], ADAM["betas"][1], ADAM["eps"],
                                 ADAM["weight_decay"]], dtype=torch.float32),
       "loads": torch.stack(LOADS).int()}
for n, g in grads.items():
    ref["grad." + n] = g
for n in names:
    ref["step." + n] = W[n].detach()
st_write(os.path.join(out, "ref.safetensors"), ref)

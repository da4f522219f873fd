"""Checks that checkpoints written by `jamba train` load in Hugging Face
transformers and compute what `jamba forward` and `jamba grad` compute.

For every case folder under --dir (each holding a checkpoint in ckpt/, the
batch in ids.json, our logits per row in logits_<b>.safetensors, our losses in
losses.json and our gradients in grads.safetensors) it loads the checkpoint
with JambaForCausalLM.from_pretrained in float32 and compares:

- the logits of every row (max |difference|, also relative to max |logit|),
- the cross-entropy and the loss with the load-balancing term,
- the gradient of the loss with the load-balancing term for every parameter
  (relative L2 error per tensor, experts split from transformers' fused
  gate_up_proj / down_proj into the per-expert checkpoint names).

It runs on the CPU by default, in exact float32 (no TF32 matmuls or convs).
It prints one line per case and writes all numbers to --out/hfcheck.json.
"""

import argparse
import json
import os
import re
import sys

import torch
from safetensors.torch import load_file
from transformers import JambaForCausalLM


def rel_l2(a, b):
    d = torch.linalg.vector_norm((a - b).double())
    n = torch.linalg.vector_norm(b.double())
    return float(d / n) if n > 0 else float(torch.max(torch.abs(a)))


def hf_grads(model):
    """Gradients under the on-disk checkpoint names."""
    out = {}
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        g = p.grad.detach().float().cpu()
        m = re.match(r"(.*\.experts)\.(gate_up_proj|down_proj)$", name)
        if m:
            prefix, kind = m.groups()
            for j in range(g.shape[0]):
                if kind == "gate_up_proj":
                    half = g.shape[1] // 2
                    out[f"{prefix}.{j}.gate_proj.weight"] = g[j, :half]
                    out[f"{prefix}.{j}.up_proj.weight"] = g[j, half:]
                else:
                    out[f"{prefix}.{j}.down_proj.weight"] = g[j]
        else:
            out[name] = g
    return out


def check(case, device):
    model = JambaForCausalLM.from_pretrained(os.path.join(case, "ckpt"), dtype=torch.float32).to(device)
    model.eval()  # no dropout; gradients still flow
    ids = json.load(open(os.path.join(case, "ids.json")))
    ours = json.load(open(os.path.join(case, "losses.json")))
    res = {"rows": len(ids), "tokens_per_row": len(ids[0])}
    x = torch.tensor(ids, dtype=torch.long, device=device)

    worst_abs, worst_rel = 0.0, 0.0
    with torch.no_grad():
        logits = model(input_ids=x, use_cache=False).logits.float().cpu()
    for b in range(len(ids)):
        mine = load_file(os.path.join(case, f"logits_{b}.safetensors"))["logits"]
        d = float(torch.max(torch.abs(logits[b] - mine)))
        worst_abs = max(worst_abs, d)
        worst_rel = max(worst_rel, d / float(torch.max(torch.abs(logits[b]))))
    res["logits_max_abs_diff"] = worst_abs
    res["logits_max_diff_rel_to_max_logit"] = worst_rel

    with torch.no_grad():
        ce = float(model(input_ids=x, labels=x, use_cache=False).loss)
    out = model(input_ids=x, labels=x, use_cache=False, output_router_logits=model.config.num_experts > 1)
    out.loss.backward()
    res["loss_hf"], res["loss_ours"] = ce, ours["loss"]
    res["loss_with_aux_hf"], res["loss_with_aux_ours"] = float(out.loss), ours["loss_with_aux"]
    res["loss_rel_diff"] = abs(ce - ours["loss"]) / abs(ce)
    res["loss_with_aux_rel_diff"] = abs(float(out.loss) - ours["loss_with_aux"]) / abs(float(out.loss))

    theirs = hf_grads(model)
    mine = load_file(os.path.join(case, "grads.safetensors"))
    worst, worst_name, zero_bad = 0.0, "", []
    missing = sorted(set(mine) ^ set(theirs))
    for name, g in mine.items():
        if name not in theirs:
            continue
        t = theirs[name]
        if torch.count_nonzero(t) == 0:
            if float(torch.max(torch.abs(g))) >= 1e-7:
                zero_bad.append(name)
            continue
        r = rel_l2(g, t)
        if r > worst:
            worst, worst_name = r, name
    res["grad_tensors"] = len(mine)
    res["grad_names_not_matched"] = missing
    res["grad_worst_rel_l2"] = worst
    res["grad_worst_tensor"] = worst_name
    res["grad_nonzero_where_hf_zero"] = zero_bad
    res["ok"] = (worst_abs <= 1e-4 * max(1.0, float(torch.max(torch.abs(logits)))) and res["loss_rel_diff"] <= 1e-5
                 and res["loss_with_aux_rel_diff"] <= 1e-5 and worst <= 1e-3 and not missing and not zero_bad)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", required=True, help="folder of case folders")
    ap.add_argument("--out", default=".", help="where to write hfcheck.json")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    import transformers
    results = {"transformers": transformers.__version__, "torch": torch.__version__, "device": args.device, "cases": {}}
    ok = True
    for name in sorted(os.listdir(args.dir)):
        case = os.path.join(args.dir, name)
        if not os.path.isdir(os.path.join(case, "ckpt")):
            continue
        r = check(case, args.device)
        results["cases"][name] = r
        ok = ok and r["ok"]
        print(f"{name}: logits max|diff| {r['logits_max_abs_diff']:.3g} ({r['logits_max_diff_rel_to_max_logit']:.3g} of max|logit|), "
              f"loss {r['loss_hf']:.7f} vs {r['loss_ours']:.7f}, with aux {r['loss_with_aux_hf']:.7f} vs {r['loss_with_aux_ours']:.7f}, "
              f"gradients worst rel L2 {r['grad_worst_rel_l2']:.3g} ({r['grad_worst_tensor']}), ok={r['ok']}", flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "hfcheck.json"), "w") as f:
        json.dump(results, f, indent=1)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

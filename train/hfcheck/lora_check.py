"""Loads the adapters that lora_prepare.sh trained with `jamba train --lora-rank`
onto transformers' JambaForCausalLM with peft.PeftModel.from_pretrained and
compares the logits (float64) with `jamba forward --lora`'s, and the base's
with `jamba forward`'s: peft/ (no dt_proj modules) through PEFT's forward and
through merge_and_unload, peft-dt/ (with dt_proj) through merge_and_unload
(and, for the record, through PEFT's forward, which on the CPU Mamba path
leaves dt_proj adapters out), peft-experts/ (q_proj, v_proj and the experts
packed as target_parameters) through PEFT's forward. Also checks that PEFT
found every tensor of each file under its own names (no missing or unexpected
keys) and that the adapters move the logits. Writes lora_result.json next to this script (or --result).

    python3 train/hfcheck/lora_check.py --dir .device/lorarev
"""
import argparse
import json
import os

import torch
from safetensors.torch import load_file
from transformers import JambaForCausalLM
from peft import PeftModel, get_peft_model_state_dict

ap = argparse.ArgumentParser()
ap.add_argument("--dir", default=".device/lorarev")
ap.add_argument("--result", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "lora_result.json"))
args = ap.parse_args()

ids = json.load(open(os.path.join(args.dir, "ids.json")))
x = torch.tensor([ids])


def ours(name):
    return load_file(os.path.join(args.dir, f"logits_{name}.safetensors"))["logits"].double()


def load_base():
    m = JambaForCausalLM.from_pretrained(os.path.join(args.dir, "base"), dtype=torch.float32, use_mamba_kernels=False,
                                         # the grouped experts path has no float64 kernel
                                         experts_implementation="eager")
    return m.to(torch.float64).eval()


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


res = {}
with torch.no_grad():
    ref_base = load_base()(x).logits[0]
res["base_max_abs_diff_rel"] = rel(ours("base"), ref_base)
for folder, logits in (("peft", "lora"), ("peft-dt", "lora_dt"), ("peft-experts", "lora_experts")):
    path = os.path.join(args.dir, folder)
    model = PeftModel.from_pretrained(load_base(), path).to(torch.float64).eval()
    saved = set(load_file(os.path.join(path, "adapter_model.safetensors")).keys())
    peft_keys = set(get_peft_model_state_dict(model).keys())
    with torch.no_grad():
        fwd = model(x).logits[0]
        try:
            merged = model.merge_and_unload()(x).logits[0]
            merged_rel = rel(ours(logits), merged)
        except Exception as e:  # merging packed experts may not be supported
            merged, merged_rel = fwd, f"merge_and_unload failed: {e!r}"
    res[folder] = {
        "peft_forward_max_abs_diff_rel": rel(ours(logits), fwd),
        "merge_and_unload_max_abs_diff_rel": merged_rel,
        "adapter_moves_logits_by_rel": rel(merged, ref_base),
        "keys_in_file": len(saved),
        "keys_missing_in_file": sorted(peft_keys - saved),
        "keys_peft_did_not_use": sorted(saved - peft_keys),
    }

import transformers, peft  # noqa: E402

res["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}
a, b, c = res["peft"], res["peft-dt"], res["peft-experts"]
# Ours computes in float32 over 24 positions and 4 layers; float32 rounding
# alone leaves ~1e-6 of the largest logit (the base check), so 1e-4 is
# that margin times 100 and still far below an adapter's own effect (>1e-3).
res["pass"] = (res["base_max_abs_diff_rel"] < 1e-4
               and a["peft_forward_max_abs_diff_rel"] < 1e-4 and a["merge_and_unload_max_abs_diff_rel"] < 1e-4
               and b["merge_and_unload_max_abs_diff_rel"] < 1e-4
               and c["peft_forward_max_abs_diff_rel"] < 1e-4
               and all(not r["keys_missing_in_file"] and not r["keys_peft_did_not_use"]
                       and r["adapter_moves_logits_by_rel"] > 1e-3 for r in (a, b, c)))
print(json.dumps(res, indent=2))
json.dump(res, open(args.result, "w"), indent=2)

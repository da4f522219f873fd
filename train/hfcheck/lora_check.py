"""Loads the adapter that lora_prepare.sh trained with `jamba train --lora-rank`
onto transformers' JambaForCausalLM with peft.PeftModel.from_pretrained and
compares its logits (float64) with `jamba forward --lora`'s, and the base's
with `jamba forward`'s. Also checks that PEFT found every tensor of the file
under its own names (no missing or unexpected keys) and that the adapter moves
the logits. Writes lora_result.json next to this script (or --result).

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
ours = {k: load_file(os.path.join(args.dir, f"logits_{k}.safetensors"))["logits"].double() for k in ("base", "lora")}

base = JambaForCausalLM.from_pretrained(os.path.join(args.dir, "base"), dtype=torch.float32, use_mamba_kernels=False)
base = base.to(torch.float64).eval()
with torch.no_grad():
    ref_base = base(x).logits[0]
model = PeftModel.from_pretrained(base, os.path.join(args.dir, "peft"))
model = model.to(torch.float64).eval()
with torch.no_grad():
    ref_lora = model(x).logits[0]

saved = set(load_file(os.path.join(args.dir, "peft", "adapter_model.safetensors")).keys())
peft_keys = set(get_peft_model_state_dict(model).keys())


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


res = {
    "base_max_abs_diff_rel": rel(ours["base"], ref_base),
    "lora_max_abs_diff_rel": rel(ours["lora"], ref_lora),
    "lora_moves_logits_by_rel": rel(ref_lora, ref_base),
    "max_abs_logit": float(ref_lora.abs().max()),
    "keys_in_file": len(saved),
    "keys_missing_in_file": sorted(peft_keys - saved),
    "keys_peft_did_not_use": sorted(saved - peft_keys),
    "torch": torch.__version__,
}
import transformers, peft  # noqa: E402

res["transformers"] = transformers.__version__
res["peft"] = peft.__version__
res["pass"] = (res["lora_max_abs_diff_rel"] < 1e-4 and res["base_max_abs_diff_rel"] < 1e-4
               and not res["keys_missing_in_file"] and not res["keys_peft_did_not_use"]
               and res["lora_moves_logits_by_rel"] > 1e-3)
print(json.dumps(res, indent=2))
json.dump(res, open(args.result, "w"), indent=2)

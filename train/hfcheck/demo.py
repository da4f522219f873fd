"""Checks the embedded demo model (demo/jamba-gostd-4m, written by `jamba train`)
in Hugging Face transformers: it loads with JambaForCausalLM.from_pretrained in
float32, its logits over a prompt and our greedy continuation equal `jamba
forward`'s, and transformers' own greedy generation gives the same ids as
`jamba generate --temperature 0`. Inputs (from demo_prepare.sh) in --dir:
ids.json (prompt ids, our generated ids), logits.safetensors. Writes
--out/democheck.json; exits 1 on a mismatch.
"""

import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file
from transformers import JambaForCausalLM


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="demo/jamba-gostd-4m")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--out", default=".")
    args = ap.parse_args()
    import transformers
    # The CUDA Mamba kernels are not used on the CPU: the reference path.
    model = JambaForCausalLM.from_pretrained(args.model, dtype=torch.float32, use_mamba_kernels=False)
    model.eval()
    d = json.load(open(os.path.join(args.dir, "ids.json")))
    prompt, ours = d["prompt"], d["generated"]
    full = torch.tensor([prompt + ours], dtype=torch.long)
    with torch.no_grad():
        logits = model(input_ids=full, use_cache=False).logits[0].float()
    mine = load_file(os.path.join(args.dir, "logits.safetensors"))["logits"]
    diff = float(torch.max(torch.abs(logits - mine)))
    scale = float(torch.max(torch.abs(logits)))
    with torch.no_grad():
        gen = model.generate(torch.tensor([prompt]), max_new_tokens=len(ours), do_sample=False,
                             eos_token_id=model.config.eos_token_id, pad_token_id=model.config.pad_token_id)
    hf = gen[0, len(prompt):].tolist()
    res = {"transformers": transformers.__version__, "torch": torch.__version__,
           "tokens": full.shape[1], "logits_max_abs_diff": diff, "max_abs_logit": scale,
           "greedy_equal": hf == ours, "greedy_ours": ours, "greedy_hf": hf}
    res["ok"] = diff <= 1e-4 * max(1.0, scale) and res["greedy_equal"]
    print(json.dumps({k: v for k, v in res.items() if not k.startswith("greedy_") or k == "greedy_equal"}), flush=True)
    os.makedirs(args.out, exist_ok=True)
    json.dump(res, open(os.path.join(args.out, "democheck.json"), "w"), indent=1)
    sys.exit(0 if res["ok"] else 1)


if __name__ == "__main__":
    main()

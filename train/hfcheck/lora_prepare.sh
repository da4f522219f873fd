#!/bin/sh
# Prepares the check of our LoRA adapters against PEFT (lora_check.py):
# rank-4 adapters trained by `jamba train --lora-rank` for 12 steps on
# testdata/models/tiny-moe (dropout 0.1; 0 with the experts), and `jamba forward` logits of one
# row of 24 ids with each adapter (--lora) and without:
#   peft/     every target PEFT can wrap on transformers 5 but dt_proj: the
#             Mamba in/x/out projections, attention, dense MLPs, routers;
#   peft-dt/  the same targets and dt_proj. PEFT's forward on transformers
#             5.17's CPU Mamba path leaves dt_proj adapters out
#             (lora/peft_test.go), so this one is compared with PEFT's
#             merge_and_unload, which merges every module as we do;
#   peft-experts/  q_proj, v_proj and the experts, saved packed as PEFT
#             saves adapters of transformers 5's experts (target_parameters).
# The text is encoded by a byte-level tokenizer
# (testdata/lora/bytes-tokenizer.json: ids 3..258), which fits tiny-moe's
# 320-token vocabulary. Run from the repository root; writes
# .device/lorarev/ (git-ignored), which the device run carries.
set -eu
out=${OUT:-.device/lorarev}
shared=${SHARED:-../shared}
ids=1,17,300,5,42,99,250,7,8,123,311,64,2,77,190,45,12,260,31,150,9,288,101,56
rm -rf "$out" && mkdir -p "$out"
go build -o "$out/jamba" ./cmd/jamba
jamba=$out/jamba
adapter() { # folder targets dropout
	$jamba train --model testdata/models/tiny-moe --tokenizer testdata/lora/bytes-tokenizer.json \
		--data "$shared/fixtures/corpus/gostd_val.txt" --seq 64 --batch 4 --steps 12 --warmup 2 --lr 5e-3 --min-lr 5e-4 \
		--weight-decay 0 --eval-every 0 --save-every 0 --seed 3 --quiet \
		--lora-rank 4 --lora-alpha 8 --lora-dropout "$3" --lora-targets "$2" --output "$out/run-$1"
	# Only the PEFT folder travels: adapter_config.json, adapter_model.safetensors.
	mkdir -p "$out/$1"
	cp "$out/run-$1/adapter_config.json" "$out/run-$1/adapter_model.safetensors" "$out/$1/"
	rm -rf "$out/run-$1"
}
adapter peft in_proj,x_proj,out_proj,q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,router 0.1
adapter peft-dt in_proj,x_proj,dt_proj,out_proj,q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,router 0.1
# PEFT's wrapper of the packed experts takes no dropout.
adapter peft-experts q_proj,v_proj,experts 0
$jamba forward --model testdata/models/tiny-moe --lora "$out/peft" --ids "$ids" --output "$out/logits_lora.safetensors"
$jamba forward --model testdata/models/tiny-moe --lora "$out/peft-dt" --ids "$ids" --output "$out/logits_lora_dt.safetensors"
$jamba forward --model testdata/models/tiny-moe --lora "$out/peft-experts" --ids "$ids" --output "$out/logits_lora_experts.safetensors"
$jamba forward --model testdata/models/tiny-moe --ids "$ids" --output "$out/logits_base.safetensors"
echo "[$ids]" > "$out/ids.json"
cp -r testdata/models/tiny-moe "$out/base"
rm -f "$out/jamba"
echo "done: $out"

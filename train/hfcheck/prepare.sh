#!/bin/sh
# Prepares the cases that check.py compares with Hugging Face transformers:
# for three configs (hybrid with MoE; tied embeddings, Mamba projection biases,
# no conv bias, attention at layer 0, 5 experts top-3; dense pure Mamba), a
# `jamba init` checkpoint trained for 40 steps by `jamba train` on the Go
# corpus, then `jamba forward` logits of two rows and `jamba grad` losses and
# gradients of the same batch. Run from the repository root; writes
# .device/hfcheck/<case>/ (git-ignored), which the device run carries.
set -eu
out=.device/hfcheck
shared=${SHARED:-../shared}
tok=$shared/fixtures/tokenizers/gostd/tokenizer.json
data=$shared/fixtures/corpus/gostd_train.txt.gz
val=$shared/fixtures/corpus/gostd_val.txt
rm -rf "$out" && mkdir -p "$out"
go build -o "$out/jamba" ./cmd/jamba
jamba=$out/jamba

common='"vocab_size": 4096, "max_position_embeddings": 4096, "use_mamba_kernels": false'
mkcase() { # name config-json pad(0|1)
	mkdir -p "$out/$1"
	echo "{$common, $2}" > "$out/$1/config.json"
	$jamba init --config "$out/$1/config.json" --output "$out/$1/init" --seed 7
	$jamba train --model "$out/$1/init" --tokenizer "$tok" --data "$data" --val "$val" --eval-tokens 2048 \
		--seq 64 --batch 4 --steps 40 --warmup 5 --lr 3e-3 --eval-every 20 --save-every 0 --quiet \
		--output "$out/$1/ckpt"
	rm "$out/$1/ckpt/optimizer.safetensors"
	# Two rows of 48 ids from a fixed pseudo-random sequence, above the
	# special ids. Only the dense case puts the padding id 0 in row 0: a
	# padding token's hidden state stays exactly zero through leading Mamba and
	# dense layers (zero embedding, zero gate), so a router after them sees a
	# row of equal logits, and top-k ties are broken differently by PyTorch
	# (which picked experts 2, 3 of 4 here) and by us (lowest indices, as the
	# inference forward), which changes the load-balancing counts.
	pad=$3
	row0=$(awk -v pad="$pad" 'BEGIN{s=11; for(i=0;i<48;i++){s=(s*1103515245+12345)%2147483648; printf "%s%d", (i?",":""), (i==5&&pad?0:3+int(s/65536)%4093)}}')
	row1=$(awk 'BEGIN{s=29; for(i=0;i<48;i++){s=(s*1103515245+12345)%2147483648; printf "%s%d", (i?",":""), 3+int(s/65536)%4093}}')
	echo "[[$row0],[$row1]]" > "$out/$1/ids.json"
	$jamba forward --model "$out/$1/ckpt" --ids "$row0" --output "$out/$1/logits_0.safetensors"
	$jamba forward --model "$out/$1/ckpt" --ids "$row1" --output "$out/$1/logits_1.safetensors"
	$jamba grad --model "$out/$1/ckpt" --ids "$row0" --ids "$row1" --output "$out/$1/grads.safetensors" |
		awk 'BEGIN{printf "{"} {printf "%s\"%s\": %s", (NR>1?", ":""), $1, $2} END{print "}"}' > "$out/$1/losses.json"
	rm -rf "$out/$1/init"
}

mkcase hybrid '"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
	"attn_layer_period": 4, "attn_layer_offset": 2, "expert_layer_period": 2, "expert_layer_offset": 1,
	"num_experts": 4, "num_experts_per_tok": 2, "mamba_d_state": 16, "mamba_dt_rank": 4' 0
mkcase variant '"hidden_size": 48, "intermediate_size": 64, "num_hidden_layers": 4, "num_attention_heads": 6, "num_key_value_heads": 3,
	"attn_layer_period": 2, "attn_layer_offset": 0, "expert_layer_period": 2, "expert_layer_offset": 1,
	"num_experts": 5, "num_experts_per_tok": 3, "mamba_d_state": 8, "mamba_dt_rank": 3, "rms_norm_eps": 1e-5,
	"tie_word_embeddings": true, "mamba_proj_bias": true, "mamba_conv_bias": false' 0
mkcase dense-mamba '"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2, "num_key_value_heads": 1,
	"attn_layer_period": 8, "attn_layer_offset": 7, "num_experts": 1, "num_experts_per_tok": 1, "mamba_d_state": 16, "mamba_dt_rank": 2' 1
rm "$jamba"
du -sh "$out"

#!/usr/bin/env bash
# The GPU half of the reliability checks (issue 6), for a machine with one CUDA GPU:
#   1. bf16 + fused AdamW on a BERT-base-sized model (30 steps)
#   2. fp16 + the gradient scaler + fused AdamW (30 steps)
#   3. FSDP2 on one GPU through `accelerate launch`: the groups after accelerator.prepare equal param_groups
#   4. DeepSpeed ZeRO-2 on one GPU, where deepspeed imports: the same check
# Each writes a JSON result; the summary goes to stdout and to $OUT/gpu_check.jsonl (or out/gpu_check/).
# Usage: bash scripts/gpu_check.sh          (from the repository root; about 3-5 minutes on an H100/H200)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-out/gpu_check}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
results="$out/gpu_check.jsonl"
: > "$results"
status=0

python - <<'PY' | tee -a "$out/gpu_check.log"
import torch, transformers, accelerate
print(f"torch {torch.__version__}, transformers {transformers.__version__}, accelerate {accelerate.__version__}, "
      f"cuda {torch.version.cuda}, device {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
PY

for precision in bf16 fp16; do
  python scripts/gpu_check.py precision "$precision" --device cuda --steps 30 --output_dir "$out/$precision" \
    2>>"$out/gpu_check.log" | tail -n 1 | tee -a "$results" || status=1
done

launched() {  # name, launcher flags...
  local name=$1; shift
  mkdir -p "$out/$name"
  if accelerate launch --num_processes 1 --num_machines 1 --mixed_precision bf16 --dynamo_backend no "$@" \
      tests/scripts/launched_groups.py "$out/$name" --bf16 true >>"$out/gpu_check.log" 2>&1; then
    python - "$name" "$out/$name/result.json" <<'PY' | tee -a "$results"
import json, sys
name, path = sys.argv[1], sys.argv[2]
record = json.load(open(path))
ok = record["groups"] == record["expected"] and all(e["loss"] == e["loss"] for e in record["logs"])
print(json.dumps({"check": name, "distributed_type": record["distributed_type"], "optimizer": record["optimizer"],
                  "groups_match": record["groups"] == record["expected"], "ok": ok}))
sys.exit(0 if ok else 1)
PY
  else
    echo "{\"check\": \"$name\", \"ok\": false, \"error\": \"launch failed, see gpu_check.log\"}" | tee -a "$results"
    return 1
  fi
}

launched fsdp2 --use_fsdp --fsdp_version 2 --fsdp_auto_wrap_policy TRANSFORMER_BASED_WRAP \
  --fsdp_transformer_layer_cls_to_wrap BertLayer --fsdp_state_dict_type SHARDED_STATE_DICT || status=1

if python -c "import deepspeed" 2>/dev/null; then
  launched zero2 --use_deepspeed --zero_stage 2 || status=1
else
  echo '{"check": "zero2", "ok": null, "skipped": "deepspeed does not import here"}' | tee -a "$results"
fi

echo "gpu_check: $( [ $status -eq 0 ] && echo all checks passed || echo SOME CHECKS FAILED ) ($results)"
exit $status

"""PyTorch + PEFT reference for bench/lora-throughput.ts: the same models, shapes, LoRA and objective.

Python is a measuring stick here, never part of fedtune. Run on the GPU machine:
    python3 bench/torch_lora_reference.py [--device cuda|cpu] [--configs demo,gpt2-small,llama-125m,qwen3-125m] [--steps 10]
fp32 with TF32 off (tokens/s comparable with fedtune's fp32), and bf16 autocast beside it. Prints JSON.
"""
import argparse, json, time

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM
from peft import LoraConfig, get_peft_model

p = argparse.ArgumentParser()
p.add_argument("--device", default="cuda")
p.add_argument("--configs", default="demo,gpt2-small")
p.add_argument("--steps", type=int, default=10)
p.add_argument("--base", default="examples/base-model")
p.add_argument("--batch", type=int, default=0, help="override every config's batch")
a = p.parse_args()
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

CASES = {
    "demo": dict(name="demo (1.9M, 4×128)", seq=128, batch=32, model=lambda: GPT2LMHeadModel.from_pretrained(a.base)),
    "gpt2-small": dict(name="GPT-2 small (124M, 12×768)", seq=256, batch=8,
                       model=lambda: GPT2LMHeadModel(GPT2Config(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12))),
    # The same ~125M Llama shape as bench/lora-throughput.ts (GQA 12:4, SwiGLU 2048, untied 32k vocabulary).
    "llama-125m": dict(name="Llama (125M, 12×768, GQA 12:4)", seq=256, batch=8,
                       targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                       model=lambda: LlamaForCausalLM(LlamaConfig(vocab_size=32000, hidden_size=768, intermediate_size=2048,
                                                                  num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=4,
                                                                  max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=10000.0,
                                                                  tie_word_embeddings=False))),
    # llama-125m's shape as Qwen3 (q/k norms, tied head), as bench/throughput-models.ts QWEN3_125M.
    "qwen3-125m": dict(name="Qwen3 (125M, 12×768, GQA 12:4, q/k norms, tied)", seq=256, batch=8,
                       targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                       model=lambda: Qwen3ForCausalLM(Qwen3Config(vocab_size=32000, hidden_size=768, intermediate_size=2048,
                                                                  num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=4,
                                                                  head_dim=64, max_position_embeddings=2048, rms_norm_eps=1e-6,
                                                                  rope_theta=1000000.0, tie_word_embeddings=True))),
}


def run(case, dtype):
    torch.manual_seed(0)
    model = case["model"]()
    gpt2 = "targets" not in case
    if gpt2:
        model.config.attn_pdrop = model.config.resid_pdrop = model.config.embd_pdrop = 0.0
    lcfg = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=case.get("targets", ["c_attn", "c_proj", "c_fc"]),
                      fan_in_fan_out=gpt2, task_type="CAUSAL_LM")
    model = get_peft_model(model, lcfg).to(a.device).train()
    opt = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=1e-4)
    ids = torch.randint(0, model.config.vocab_size, (case["batch"], case["seq"]), device=a.device)

    def step():
        with torch.autocast(device_type=a.device, dtype=torch.bfloat16, enabled=dtype == "bf16"):
            loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    for _ in range(3):
        step()
    if a.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    loss = loss.item()  # one read-back, as fedtune does
    if a.device == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    return {"config": case["name"], "device": a.device, "dtype": dtype, "seq": case["seq"], "batch": case["batch"], "steps": a.steps,
            "step_ms": 1000 * dt / a.steps, "tokens_per_second": a.steps * case["batch"] * case["seq"] / dt,
            "peak_bytes": torch.cuda.max_memory_allocated() if a.device == "cuda" else -1, "train_loss": loss,
            "threads": torch.get_num_threads()}


out = []
for name in a.configs.split(","):
    for dtype in (["fp32", "bf16"] if a.device == "cuda" else ["fp32"]):
        out.append(run(dict(CASES[name], batch=a.batch or CASES[name]["batch"]), dtype))
print(json.dumps({"torch": torch.__version__, "device_name": torch.cuda.get_device_name() if a.device == "cuda" else "cpu", "results": out}, indent=2))

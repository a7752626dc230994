"""Step 2 of making a demo base model: pretrain a small GPT-2 (examples/base-model) or a Llama-architecture model of
the same size (examples/llama-base) on the token stream from build-corpus.

Runs where PyTorch and a GPU are (fedtune's device machine); Python is only the tool that made the committed
weights, never a runtime dependency: fedtune loads the resulting Hugging Face safetensors unchanged.

    python3 examples/pretrain/pretrain.py .pretrain/corpus.bin OUT_DIR [--steps N] [--arch gpt2|llama]

Writes OUT_DIR/config.json, OUT_DIR/model.safetensors (save_pretrained) and OUT_DIR/pretrain.json
(hyper-parameters, seed, losses). The Llama base is saved in float16 (half the bytes to commit); its
pretrain.json also holds a check: a few held-out token ids and the loss transformers computes on them from the
saved files, which fedtune's loader must reproduce (test/llama-demo.test.ts).
"""
import argparse, json, math, os, time

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

p = argparse.ArgumentParser()
p.add_argument("corpus")
p.add_argument("out")
p.add_argument("--steps", type=int, default=4000)
p.add_argument("--batch", type=int, default=128)
p.add_argument("--seq", type=int, default=128)
p.add_argument("--lr", type=float, default=2e-3)
p.add_argument("--seed", type=int, default=1234)
p.add_argument("--arch", choices=["gpt2", "llama"], default="gpt2")
a = p.parse_args()

torch.manual_seed(a.seed)
np.random.seed(a.seed)
ids = np.fromfile(a.corpus, dtype="<u2").astype(np.int64)
n_val = len(ids) // 50  # last 2% held out
train, val = torch.from_numpy(ids[:-n_val]), torch.from_numpy(ids[-n_val:])
dev = "cuda" if torch.cuda.is_available() else "cpu"
if a.arch == "gpt2":
    cfg = GPT2Config(vocab_size=8192, n_positions=a.seq, n_embd=128, n_layer=4, n_head=4,
                     bos_token_id=0, eos_token_id=0, resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1)
    model = GPT2LMHeadModel(cfg).to(dev)
else:
    # The GPT-2 base's size class (4 × 128, 8,192 tokens, tied head) in the Llama family's shape: RMSNorm, rope,
    # grouped-query attention 4:2, SwiGLU 352 (about 2.75 × 128, rounded to a multiple of 32).
    cfg = LlamaConfig(vocab_size=8192, hidden_size=128, intermediate_size=352, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=a.seq,
                      rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True,
                      bos_token_id=0, eos_token_id=0, attention_dropout=0.0)
    model = LlamaForCausalLM(cfg).to(dev)
nparams = sum(p.numel() for p in model.parameters())
opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.1)
g = torch.Generator().manual_seed(a.seed)


def batch(src, bs):
    ix = torch.randint(0, len(src) - a.seq - 1, (bs,), generator=g)
    return torch.stack([src[i:i + a.seq] for i in ix]).to(dev)


@torch.no_grad()
def val_loss():
    model.eval()
    losses = []
    for i in range(0, len(val) - a.seq, a.seq * 64):
        xs = [val[j:j + a.seq] for j in range(i, min(i + a.seq * 64, len(val) - a.seq), a.seq)]
        x = torch.stack(xs).to(dev)
        losses.append(model(input_ids=x, labels=x).loss.item())
    model.train()
    return float(np.mean(losses))


log = []
t0 = time.time()
warm = 200
for step in range(a.steps):
    lr = a.lr * min(1, (step + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / a.steps)))
    for grp in opt.param_groups:
        grp["lr"] = lr
    x = batch(train, a.batch)
    loss = model(input_ids=x, labels=x).loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    if step % 500 == 0 or step == a.steps - 1:
        v = val_loss()
        log.append({"step": step, "train_loss": loss.item(), "val_loss": v, "seconds": time.time() - t0})
        print(json.dumps(log[-1]), flush=True)

model.eval()
os.makedirs(a.out, exist_ok=True)
extra = {}
if a.arch == "llama":
    model = model.to(torch.float16)
    model.save_pretrained(a.out, safe_serialization=True)
    # What the committed bytes compute: reload the saved files, float32 on the CPU, eager attention.
    model = LlamaForCausalLM.from_pretrained(a.out, dtype=torch.float32, attn_implementation="eager").eval()
    ids = val[:4 * 64].view(4, 64)
    with torch.no_grad():
        check_loss = model(input_ids=ids, labels=ids).loss.item()
    model = model.to(dev)
    extra = {"arch": "llama", "dtype": "float16", "val_loss_saved": val_loss(),
             "check": {"ids": ids.tolist(), "loss": check_loss}}
else:
    model.save_pretrained(a.out, safe_serialization=True)
json.dump({**extra, "params": nparams, "tokens_train": len(train), "tokens_val": len(val), "steps": a.steps,
           "batch": a.batch, "seq": a.seq, "lr": a.lr, "seed": a.seed, "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu",
           "torch": torch.__version__, "log": log}, open(os.path.join(a.out, "pretrain.json"), "w"), indent=2)
print("params", nparams)

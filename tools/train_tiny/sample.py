#!/usr/bin/env python3
"""Sample generations of the shipped snapshot (CPU, fp32, generation_config.json defaults: T 0.7, top_p 0.8,
top_k 20, repetition penalty 1.05). Output of one run: samples.txt."""
import torch
from transformers import AutoTokenizer, Qwen3_5MoeForCausalLM
m="models/tiny-qwen35moe"
tok=AutoTokenizer.from_pretrained(m); model=Qwen3_5MoeForCausalLM.from_pretrained(m,dtype=torch.float32,experts_implementation="eager").eval()
torch.set_num_threads(2)
for p in ["In the beginning", "And it came to pass, when the king"]:
    x=tok(p,return_tensors="pt").input_ids
    for seed in (1,2):
        torch.manual_seed(seed); y=model.generate(x,max_new_tokens=60)
        print("PLAIN seed",seed,repr(tok.decode(y[0])),flush=True)
for q,th in [("Continue: And God said, Let there be light",False),("What does John 3:16 say?",False),("Who are you?",False),("Tell me a story.",False),("Read me Psalms 23.",False),("Hello!",True)]:
    t=tok.apply_chat_template([{"role":"user","content":q}],tokenize=False,add_generation_prompt=True,enable_thinking=th)
    x=tok(t,return_tensors="pt",add_special_tokens=False).input_ids
    torch.manual_seed(1); y=model.generate(x,max_new_tokens=120)
    print("CHAT think=%s"%th,repr(q),"->",repr(tok.decode(y[0,x.shape[1]:])),flush=True)

#!/usr/bin/env python3
"""Regenerates the bert and nomic-bert test models and llama.cpp's reference vectors.

Small random-weight variants of ../shared/tools/make_embed_models.py (same tensors and
keys, smaller shapes, quantized token embeddings) so that both files together stay near
2 MB, with the donor WordPiece vocab of ggml-vocab-bert-bge.gguf:

  bert-tiny.gguf        learned positions, post-LN with biases, GELU FFN; F32 matrices,
                        Q4_0 token embedding; pooling_type MEAN (1)
  nomic-bert-tiny.gguf  fused QKV, NeoX RoPE, SwiGLU FFN, no biases; Q5_0 matrices,
                        Q4_0 token embedding; pooling_type CLS (2)

(Q5_0 rather than Q8_0 for nomic-bert's matrices: on CPUs with AMX, llama.cpp's AMX
matmul crashes on this file's Q8_0 matrices (SIGSEGV in ggml_backend_amx_mul_mat, seen
at llama.cpp's commit recorded in reference.json); Q5_0 has no AMX kernel.)

reference.json holds, per model and input text, llama-tokenize's ids, llama-embedding's
pooled embedding (the file's pooling, L2-normalised: --embd-normalize 2) and its
per-token hidden states (--pooling none --embd-normalize -1), from which tests check the
other pooling types.

usage: gen.py   (run from anywhere; needs python3 with numpy)
env:   LLAMA_CPP  llama.cpp checkout with build/bin and gguf-py (default ~/.cache/hearth-ref/llama.cpp)
       DONOR      vocab GGUF (default <repo>/../shared/vocab/ggml-vocab-bert-bge.gguf)
"""
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
LLAMA = os.path.expanduser(os.environ.get("LLAMA_CPP", "~/.cache/hearth-ref/llama.cpp"))
DONOR = os.environ.get("DONOR", os.path.join(REPO, "..", "shared", "vocab", "ggml-vocab-bert-bge.gguf"))
sys.path.insert(0, os.path.join(LLAMA, "gguf-py"))
import gguf  # noqa: E402
from gguf import GGMLQuantizationType as Q  # noqa: E402

E, H, FF, L, CTX = 64, 4, 128, 2, 128
SEED = 7

INPUTS = [
    "hello world",
    "The quick brown fox jumps over the lazy dog.",
    "a",
    "Embedding models map text to vectors; similar texts land close together, "
    "and dissimilar ones far apart (usually).",
    "Café naïve résumé — ünïcödé 東京 42!",
    "A longer passage, to reach further positions: BERT reads its whole input at once, every "
    "token attending to every other one, before and after it. Its learned position embeddings "
    "stop at the trained context, and nomic-bert rotates its queries and keys instead; both "
    "normalise after each residual, not before, which is why they are called post-norm encoders.",
]

rng = np.random.default_rng(SEED)
donor = gguf.GGUFReader(DONOR)
V = len(donor.fields["tokenizer.ggml.tokens"].data)


def copy_tokenizer(w):
    for name, f in donor.fields.items():
        if not name.startswith("tokenizer."):
            continue
        vt = f.types[0]
        if vt == gguf.GGUFValueType.ARRAY:
            if f.types[-1] == gguf.GGUFValueType.STRING:
                w.add_array(name, [bytes(f.parts[i]).decode("utf-8", errors="surrogateescape") for i in f.data])
            else:
                w.add_array(name, [f.parts[i].tolist()[0] for i in f.data])
        elif vt == gguf.GGUFValueType.STRING:
            w.add_string(name, bytes(f.parts[f.data[0]]).decode())
        else:
            w.add_key_value(name, f.parts[f.data[0]].tolist()[0], vt)
    if "tokenizer.ggml.token_type_count" not in donor.fields:
        w.add_uint32("tokenizer.ggml.token_type_count", 2)


def mat(*s, sc=0.1):
    return (rng.standard_normal(s, dtype=np.float32) * sc).astype(np.float32)


def nw(n):
    return (1 + 0.1 * rng.standard_normal(n, dtype=np.float32)).astype(np.float32)


def nb(n):
    return (0.05 * rng.standard_normal(n, dtype=np.float32)).astype(np.float32)


def write(path, arch, kv, tensors, pooling, mat_type):
    w = gguf.GGUFWriter(path, arch)
    w.add_name(f"tiny random {arch}")
    base = {"context_length": CTX, "embedding_length": E, "block_count": L, "feed_forward_length": FF,
            "attention.head_count": H, "attention.layer_norm_epsilon": 1e-12}
    base.update(kv)
    for k, v in base.items():
        key = f"{arch}.{k}"
        if isinstance(v, int):
            w.add_uint32(key, v)
        else:
            w.add_float32(key, v)
    w.add_bool(f"{arch}.attention.causal", False)
    w.add_uint32(f"{arch}.pooling_type", pooling)
    copy_tokenizer(w)
    for n, t in tensors:
        typ = Q.F32
        if n == "token_embd.weight":
            typ = Q.Q4_0
        elif t.ndim == 2 and n.startswith("blk."):
            typ = mat_type
        if typ == Q.F32:
            w.add_tensor(n, t)
        else:
            w.add_tensor(n, gguf.quants.quantize(t, typ), raw_dtype=typ)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def bert(path):
    t = [("token_embd.weight", mat(V, E, sc=0.5)), ("token_types.weight", mat(2, E, sc=0.1)),
         ("position_embd.weight", mat(CTX, E, sc=0.1)), ("token_embd_norm.weight", nw(E)),
         ("token_embd_norm.bias", nb(E))]
    for i in range(L):
        p = f"blk.{i}."
        t += [(p + "attn_q.weight", mat(E, E)), (p + "attn_q.bias", nb(E)),
              (p + "attn_k.weight", mat(E, E)), (p + "attn_k.bias", nb(E)),
              (p + "attn_v.weight", mat(E, E)), (p + "attn_v.bias", nb(E)),
              (p + "attn_output.weight", mat(E, E)), (p + "attn_output.bias", nb(E)),
              (p + "attn_output_norm.weight", nw(E)), (p + "attn_output_norm.bias", nb(E)),
              (p + "ffn_up.weight", mat(FF, E)), (p + "ffn_up.bias", nb(FF)),
              (p + "ffn_down.weight", mat(E, FF)), (p + "ffn_down.bias", nb(E)),
              (p + "layer_output_norm.weight", nw(E)), (p + "layer_output_norm.bias", nb(E))]
    write(path, "bert", {}, t, 1, Q.F32)


def nomic(path):
    t = [("token_embd.weight", mat(V, E, sc=0.5)), ("token_types.weight", mat(2, E, sc=0.1)),
         ("token_embd_norm.weight", nw(E)), ("token_embd_norm.bias", nb(E))]
    for i in range(L):
        p = f"blk.{i}."
        t += [(p + "attn_qkv.weight", mat(3 * E, E)), (p + "attn_output.weight", mat(E, E)),
              (p + "attn_output_norm.weight", nw(E)), (p + "attn_output_norm.bias", nb(E)),
              (p + "ffn_up.weight", mat(FF, E)), (p + "ffn_gate.weight", mat(FF, E)),
              (p + "ffn_down.weight", mat(E, FF)),
              (p + "layer_output_norm.weight", nw(E)), (p + "layer_output_norm.bias", nb(E))]
    write(path, "nomic-bert", {"rope.freq_base": 1000.0}, t, 2, Q.Q5_0)


def run(*args):
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{args[0]} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return r.stdout


def tokens(model, text):
    out = run(os.path.join(LLAMA, "build", "bin", "llama-tokenize"), "-m", model, "-p", text, "--ids", "--log-disable")
    return json.loads(out.strip().splitlines()[-1])


def embed(model, text, pooling, normalize):
    args = [os.path.join(LLAMA, "build", "bin", "llama-embedding"), "-m", model, "-p", text, "-t", "2",
            "-c", str(CTX), "--embd-normalize", str(normalize), "--embd-output-format", "json"]
    if pooling:
        args += ["--pooling", pooling]
    # llama-embedding prints through its asynchronous logger, which now and then loses
    # the tail of the output at exit: run it again until the JSON is whole.
    for _ in range(10):
        out = run(*args)
        try:
            return [d["embedding"] for d in json.loads(out[out.index("{"):])["data"]]
        except ValueError:
            continue
    sys.exit(f"llama-embedding printed no whole JSON for {text!r}")


def main():
    ref = {"llama.cpp": run("git", "-C", LLAMA, "rev-parse", "HEAD").strip(), "models": {}}
    for name, make in (("bert-tiny.gguf", bert), ("nomic-bert-tiny.gguf", nomic)):
        path = os.path.join(HERE, name)
        make(path)
        cases = []
        for text in INPUTS:
            cases.append({"text": text, "tokens": tokens(path, text),
                          "embedding": embed(path, text, None, 2)[0],
                          "hidden": embed(path, text, "none", -1)})
        ref["models"][name] = {"pooling": 1 if make is bert else 2, "inputs": cases}
        print(path, os.path.getsize(path))
    with open(os.path.join(HERE, "reference.json"), "w") as f:
        json.dump(ref, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Makes mistral3-h7-Q8_0.gguf (a random-weight Mistral 3 text model: Llama's
# block plus the attention temperature and YaRN with a log multiplier, an
# original context of 16 so that prompts cross several temperature steps)
# and llama.cpp's golden outputs for it (golden/<prompt>.json), with the
# reference build of ../../../../../shared/tools/llama-cpp-ref.sh.
#   usage: make_mistral3.sh [LLAMA_CPP_DIR] [BUILD_DIR]
# On a machine with AMX, use a build configured with -DGGML_NATIVE=OFF and
# AVX-512 on but AMX off: the native build's AMX matmul crashes there.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
shared=${HEARTH_TESTDATA:-$here/../../../../../shared}
L=${1:-$HOME/.cache/hearth-ref/llama.cpp}
B=${2:-$L/build}
tmp=$(mktemp -d)
GGUF_PY=$L/gguf-py /usr/bin/python3 - "$shared/models/stories260K-f32.gguf" "$tmp/mistral3-F32.gguf" <<'PY'
import os, sys
import numpy as np
sys.path.insert(0, os.environ["GGUF_PY"])
import gguf
donor, path = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(7)
E, H, KV, HD, FF, L = 256, 4, 2, 64, 512, 3
r = gguf.GGUFReader(donor)
w = gguf.GGUFWriter(path, "mistral3")
w.add_name("hidden mistral3")
for k, v in {"context_length": 1024, "embedding_length": E, "block_count": L, "feed_forward_length": FF,
             "attention.head_count": H, "attention.head_count_kv": KV, "rope.dimension_count": HD}.items():
    w.add_uint32("mistral3." + k, v)
for k, v in {"attention.layer_norm_rms_epsilon": 1e-5, "rope.freq_base": 1000000.0, "rope.scaling.factor": 4.0,
             "rope.scaling.yarn_log_multiplier": 1.0, "rope.scaling.yarn_beta_fast": 32.0,
             "rope.scaling.yarn_beta_slow": 1.0, "attention.temperature_scale": 0.1}.items():
    w.add_float32("mistral3." + k, v)
w.add_string("mistral3.rope.scaling.type", "yarn")
w.add_uint32("mistral3.rope.scaling.original_context_length", 16)
for name, f in r.fields.items():
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
V = len(r.fields["tokenizer.ggml.tokens"].data)
mat = lambda *s: (rng.standard_normal(s, dtype=np.float32) * 0.05).astype(np.float32)
norm = lambda n: (1 + 0.1 * rng.standard_normal(n, dtype=np.float32)).astype(np.float32)
w.add_tensor("token_embd.weight", (rng.standard_normal((V, E), dtype=np.float32) * 0.5).astype(np.float32))
w.add_tensor("output_norm.weight", norm(E))
w.add_tensor("output.weight", mat(V, E))
for i in range(L):
    p = f"blk.{i}."
    for n, t in [("attn_norm.weight", norm(E)), ("attn_q.weight", mat(H * HD, E)), ("attn_k.weight", mat(KV * HD, E)),
                 ("attn_v.weight", mat(KV * HD, E)), ("attn_output.weight", mat(E, H * HD)), ("ffn_norm.weight", norm(E)),
                 ("ffn_gate.weight", mat(FF, E)), ("ffn_up.weight", mat(FF, E)), ("ffn_down.weight", mat(E, FF))]:
        w.add_tensor(p + n, t)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
PY
"$B/bin/llama-quantize" --pure "$tmp/mistral3-F32.gguf" "$here/mistral3-h7-Q8_0.gguf" Q8_0 >/dev/null 2>&1
g++ -O2 -std=c++17 -I"$L/include" -I"$L/ggml/include" "$shared/tools/golden.cpp" -L"$B/bin" -lllama -lggml -lggml-base \
	-Wl,-rpath,"$B/bin" -o "$tmp/golden"
mkdir -p "$here/golden/mistral3-h7-Q8_0"
for p in once-upon-a-time quick-brown-fox paragraph; do
	"$tmp/golden" "$here/mistral3-h7-Q8_0.gguf" "$shared/arch/golden/prompts/$p.txt" "$here/golden/mistral3-h7-Q8_0/$p.json" >/dev/null 2>&1
done
rm -rf "$tmp"
echo "wrote $here/mistral3-h7-Q8_0.gguf and $here/golden/mistral3-h7-Q8_0/"

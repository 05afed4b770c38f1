// dump_tensors: runs a prompt in one batch with shared/tools/golden.cpp's
// settings and writes every f32 graph tensor llama.cpp computes to
// DIR/<name>.bin (int64 ne[4], then the values in ggml order), and the
// logits of every position to DIR/_logits.bin. runtime/arch/all's
// TestTraceAgainstLlama compares Hearth's decoder tensors with them.
// Build (build-noamx: AMX repacking changes llama.cpp's sums):
//   REF=~/.cache/hearth-ref/llama.cpp; LIB=$REF/build-noamx/bin
//   g++ -O2 -std=c++17 -I$REF/include -I$REF/ggml/include dump_tensors.cpp \
//     -L$LIB -lllama -lggml -lggml-base -Wl,-rpath,$LIB -o dump_tensors
// usage: dump_tensors MODEL PROMPT DIR   (NOCB=1: no callback, logits only)
#include "llama.h"
#include "ggml.h"
#include "ggml-backend.h"
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>
#include <fstream>
#include <sstream>
#include <algorithm>
static std::string dir;
static bool cb(struct ggml_tensor *t, bool ask, void *) {
    if (ask) return true;
    if (t->type != GGML_TYPE_F32) return true;
    std::vector<char> raw(ggml_nbytes(t));
    ggml_backend_tensor_get(t, raw.data(), 0, raw.size());
    std::vector<float> out;
    out.reserve(ggml_nelements(t));
    for (int64_t i3 = 0; i3 < t->ne[3]; i3++)
    for (int64_t i2 = 0; i2 < t->ne[2]; i2++)
    for (int64_t i1 = 0; i1 < t->ne[1]; i1++)
    for (int64_t i0 = 0; i0 < t->ne[0]; i0++) {
        size_t off = i0*t->nb[0] + i1*t->nb[1] + i2*t->nb[2] + i3*t->nb[3];
        float v; memcpy(&v, raw.data() + off, 4); out.push_back(v);
    }
    std::string name = t->name;
    std::replace(name.begin(), name.end(), '/', '_');
    std::replace(name.begin(), name.end(), ' ', '_');
    FILE *f = fopen((dir + "/" + name + ".bin").c_str(), "wb");
    int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
    fwrite(ne, 8, 4, f); fwrite(out.data(), 4, out.size(), f); fclose(f);
    return true;
}
int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: dump MODEL PROMPT DIR\n"); return 2; }
    dir = argv[3];
    std::ifstream pf(argv[2]); std::stringstream ps; ps << pf.rdbuf(); std::string prompt = ps.str();
    while (!prompt.empty() && prompt.back() == '\n') prompt.pop_back();
    llama_backend_init();
    auto mp = llama_model_default_params(); mp.n_gpu_layers = 0;
    llama_model *model = llama_model_load_from_file(argv[1], mp);
    const llama_vocab *vocab = llama_model_get_vocab(model);
    int nv = llama_vocab_n_tokens(vocab);
    auto cp = llama_context_default_params();
    cp.n_ctx = 1024; cp.n_batch = 1024; cp.n_ubatch = 1024; cp.n_threads = 2; cp.n_threads_batch = 2;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED; cp.no_perf = true;
    if (!getenv("NOCB")) { cp.cb_eval = cb; cp.cb_eval_user_data = nullptr; }
    llama_context *ctx = llama_init_from_model(model, cp);
    std::vector<llama_token> ids(prompt.size() + 8);
    int n = llama_tokenize(vocab, prompt.c_str(), prompt.size(), ids.data(), ids.size(), true, false);
    ids.resize(n);
    llama_batch batch = llama_batch_init(std::max(n, 1), 0, 1);
    for (int i = 0; i < n; i++) { batch.token[i] = ids[i]; batch.pos[i] = i; batch.n_seq_id[i] = 1; batch.seq_id[i][0] = 0; batch.logits[i] = 1; }
    batch.n_tokens = n;
    if (llama_decode(ctx, batch)) { fprintf(stderr, "decode failed\n"); return 1; }
    FILE *f = fopen((dir + "/_logits.bin").c_str(), "wb");
    int64_t ne[4] = {nv, n, 1, 1}; fwrite(ne, 8, 4, f);
    for (int i = 0; i < n; i++) fwrite(llama_get_logits_ith(ctx, i), 4, nv, f);
    fclose(f);
    return 0;
}

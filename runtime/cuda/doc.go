// Package cuda is the GPU backend: backend.Backend on an NVIDIA GPU
// through the CUDA driver API, with the kernels of kernels/cuda.
//
// # Driver
//
// libcuda.so.1 is opened at run time and bound with purego (libcuda.go),
// behind the Driver interface so tests use a fake: the same binary builds
// without the CUDA toolkit (CGO_ENABLED=0 too) and runs on machines with
// and without a GPU. No driver, a driver older than CUDA 11 (the PTX is
// ISA 7.0), no device or one older than compute capability 8.0 (the PTX
// targets sm_80) is an error wrapping ErrNoDevice that says which, never a
// crash; NewBackend logs it in one line, and the caller falls back to the
// CPU. Driver errors are *Error values carrying the CUresult's name.
//
// # Threads
//
// A CUDA context is current per OS thread. A Device owns one goroutine
// locked to its thread (runtime.LockOSThread), which retains the primary
// context, makes it current, creates the stream and loads the PTX modules
// (cuModuleLoadData: the driver JIT-compiles them for the GPU at hand).
// Every driver call is funnelled to it: Device.Do waits for the result,
// Device.Go queues and returns (kernel launches, uploads), so a forward
// pass costs the caller a channel send per operation and the GPU runs
// ahead. A queued call's failure is sticky: it is returned by Device.Err
// and by every later Do, and the backend's Err reports it from then on
// (never cleared: the context is unusable).
//
// # Errors
//
// The backend follows backend.Backend's error channel: an operation
// records its first error (a token id or position out of range, a KV
// cache that is not the backend's, memory that ran out in NewTensor or
// for scratch, step inputs or RoPE tables) and launches nothing while one
// is pending or the device has failed; Err takes the recorded one. A
// tensor whose allocation failed has no device memory, and an operation
// on it records an error instead of launching on a zero address. Shapes
// that do not fit remain panics (programming errors).
//
// # Memory and layouts
//
// Weights are uploaded once, as the mmapped bytes in ggml's block layout
// (F32, F16, BF16, Q4_0, Q8_0, Q4_K, Q6_K have kernels; any other format
// is dequantized to F16 at load, 1-row norm vectors to F32). An activation
// Tensor is a device buffer of float32 rows; Slice is a view into it.
// The backend owns every allocation in a ledger (memory.go), whatever it
// holds: weights and KV pools live with the loaded model, activations are
// allocated by the model once per largest batch and reused step after
// step (its arena; the decoder reuses its logits too). Free returns a
// tensor or a KV pool after the work queued before it (while a graph
// segment is recorded, after its submission); Close returns every byte
// left, so unloading a model frees all its device memory (MemStats; the
// fake driver's counters in TestDeviceMemoryFake). The Go collector plays
// no part. Files: backend.go (options, lifetime), memory.go, weights.go,
// ops.go, attention.go, experts.go (a mixture's decode step routed on the
// device: backend.Experts, with expert ids in device tensors and the
// experts' weights reached through a table of their addresses), device.go
// (the worker and launches), libcuda.go.
// A KV pool is runtime/cpu's layout in f16 on the device: for each layer
// blocks × blockSize rows of kvDim values; block tables, positions and
// per-token pool addresses are uploaded once per step (the first layer's
// Attention) and reused by the other layers (with graphs on, into the
// step-input arena).
//
// # Numerics (against the CPU backend)
//
// Embedding rows are dequantized bit for bit; AddBias, Scale and
// AddScaledRows (pairs grouped by destination row on the host, added in
// the CPU's order) are exact; RMSNorm (whole rows or per head), LayerNorm,
// RoPE (the CPU's own cos/sin tables, uploaded), SiLU, SwiGLU, gpt-oss's
// clamped SwiGLU and Add agree to rounding; GELU rounds its input and
// output to f16 as the CPU's table does, one f16 step apart from it at a
// few rounding boundaries (kernels/cuda act.cu); the matrix
// products quantize activations to int8 per 32 values for the quantized
// formats (byte for byte the CPU's Q8_0 for Q4_0 and Q8_0 weights; finer
// than its Q8_K for the K-quants) and round them to F16/BF16 for those
// weights, as ggml does; attention follows kernels/cpu step for step (f16
// q, f16-rounded probabilities), with its variants (sliding window,
// soft-capped scores, sinks, non-causal encoders). The differential tests (TestOpsFake and
// TestForwardFake over the fake driver, whose kernel models are checked
// against package quant; gpu_test.go, build tag gpu, on a device) hold
// each operation and whole forward passes to the CPU backend and to
// llama.cpp's golden outputs within internal/golden's tolerances.
//
// # LoRA adapters (backend.LoRA; lora.go, kernels/cuda lora.cu)
//
// A pair is uploaded as the CPU keeps it (A, and B transposed; F16 when
// the file has it, else F32) and stays in the ledger until Close. A
// product's deltas, whatever the number of adapters in the step, are two
// launches: lora_shrink (c = s·A·x for each task: an adapter and up to 8
// of its rows, so A is read once per task) and lora_expand (dst += Bᵀ·c),
// over a task table uploaded as a step input; the token embedding's delta
// gathers columns of A instead (lora_shrink_embed). Decode steps with
// adapters record into graphs like any other: the table goes through the
// step-input arena, and a step's graph is keyed by its topology, which
// follows the number of tasks and the largest rank. Checked over the fake
// driver (TestOpsFake's lora rows, TestLoRAForwardFake: a generation with
// adapters mixed in, vs the CPU and as graphs; TestEngineLoRAFake: the
// engine's greedy tokens vs the CPU's, batched and alone) and on a GPU by
// TestGPULoRA. Adapters of a split model are not supported (runtime/split
// has no backend.LoRA): loading one fails with lora.ErrUnsupported.
//
// # Partial offload
//
// When a model does not fit, runtime/split runs its last layers here and
// the rest on the CPU, each layer's KV cache beside it (the policy of
// llama.cpp's -ngl; hearth's --gpu-layers, engine.Options.GPULayers).
// Offload decides: an explicit count is taken as asked; otherwise as many
// layers as fit in cuMemGetInfo's free memory, from the last, each with
// its share of the caller's KV budget, after reserving the activations of
// a 512-token batch and OffloadMargin, and the output layer (with the
// logits of 512 rows) when every layer fits, which is the whole model on
// the GPU with no split at all. Weights are sized by WeightBytes, this
// backend's storage rules. The decision is logged in one line
// ("offloading 20/32 layers to the GPU (9.1 GiB of 10.0 GiB free)").
// Activations cross at the boundary through Write (a queued
// cuMemcpyHtoDAsync of a copy of the rows) and Read (one copy of all the
// rows asked for); a weight or KV cache that does not fit fails the load
// with an error matching ErrOutOfMemory that names the tensor.
//
// Checked here over the fake driver (split_test.go): split forward passes
// within the parity tolerances, the bytes uploaded for each placement, the
// choice under less free memory, out-of-memory as an error. Only a GPU
// can check (gpu_split_test.go and the device check): the real kernels
// across the boundary, the ordering of the queued uploads against kernels
// on a real stream (the fake runs every call at once), whether the
// reserves cover what the driver really takes (allocation granularity,
// JIT and library memory, other processes' use between the decision and
// the upload), and the time the boundary copies cost.
//
// # Decode steps as CUDA graphs (opt-in: HEARTH_CUDA_GRAPH=1)
//
// With Options.Graphs (or HEARTH_CUDA_GRAPH=1) the device records kernel
// launches instead of queueing them, and submits a recorded segment when
// anything must wait for it or follow it (a Read or Argmax ends a forward
// pass; an upload, Sync or Close too). A segment of 16 kernels or more
// whose topology (kernels, grids, blocks in order) was submitted before is
// built into a CUDA graph node by node, instantiated once and cached (8 at
// most, by topology: a decode step's graph is keyed by its batch size and
// output rows, since attention reads positions and block tables from
// memory); later segments of that topology set the kernel arguments that
// changed on the instantiated graph and launch it with one call. Per-step
// inputs (ids, positions, block tables, KV slots, output rows) go into a
// step-input arena at a fixed device address, uploaded in one copy before
// the segment, so the arguments of consecutive decode steps hardly change
// (the logits tensor's address does: one node patched). A failed build or
// update is logged once and everything runs directly from then on.
// graph.go has the details; graph_test.go checks over the fake driver
// that graph steps give bitwise the logits of direct steps over a
// generation with growing caches and changing batch sizes, and
// gpu_test.go's TestGPUGraphStep does the same on a GPU. Off by default
// until that device check has passed.
//
// # Tensor cores for prefill (HEARTH_CUDA_MMA=1 turns them on)
//
// Off by default until the device check (gpu_test.go: the mma rows of
// TestGPUOps and TestGPUGolden) has passed on a GPU.
//
// Matrix products of 16 tokens or more with Q4_0, Q8_0, Q4_K, Q6_K or F16
// weights (width a multiple of 32) run on kernels/cuda mma.cu:
// mma.sync.m16n8k16 on weights dequantized to f16 in shared memory and
// activations rounded to f16 (the int8 activations of quantize_q8 times
// their scale for the quantized formats), f32 accumulation, 128 × 128
// output tiles. Relative error against the CPU's MatMul: ~3e-4 for Q4_0
// and Q8_0, the CPU's own Q8_K activation rounding (~8e-3) for K-quants.
// Smaller batches use matvec (≤ 8 tokens) or matmul.cu's float32 FMA
// tiles, which also serve the other formats.
//
// Prediction for Llama-8B pp512 on an H200 (kernels/cuda/NOTES.md has the
// arithmetic): 7.2 TFLOP of matrix products at 100-200 TFLOP/s (issue-
// bound by dequantization at ~35% of the mma.sync peak) is 36-72 ms,
// attention (not on tensor cores, K/V re-read from L2 per token and head)
// 5-10 ms, the rest ~2 ms: 43-84 ms per 512 tokens, 6,000-12,000 tok/s,
// against llama.cpp's 8,585 (Q4_K_M) and 10,283 (Q4_0); matmul.cu's FMA
// tiles manage ~1,300.
//
// Telemetry (ReadTelemetry: name, memory, compute capability, power,
// utilisation, temperature) comes from NVML through go-nvml, which needs
// cgo; a build without cgo returns ErrNoDevice for it.
package cuda

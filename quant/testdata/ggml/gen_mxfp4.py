#!/usr/bin/env python3
"""Writes the MXFP4 test vectors in this folder by calling ggml itself.

Usage: gen_mxfp4.py LIBDIR   (LIBDIR holds a llama.cpp build's libggml-base.so
and libggml-cpu.so; standard library only, no numpy)

Files, all raw little-endian, no header:

  MXFP4.{W.f32,x.f32,Wq.bin,Wdeq.f32,xq.bin,y.f32}: the same layout as
      shared/quant (see its README): W 8 x 512 with 12 outliers, x 512 with 2;
      Wq = ggml_quantize_chunk(MXFP4, W) (quantize_row_mxfp4_ref), Wdeq its
      to_float, xq = the CPU backend's Q8_0 from_float of x, y[r] = the CPU
      backend's vec_dot (ggml_vec_dot_mxfp4_q8_0) of row r with xq.
  MXFP4.edge.f32 / MXFP4.edge.q.bin: blocks of 32 inputs made to hit the
      quantizer's corners (amax on either side of log2f's rounding to the next
      power of two in many binades, subnormal and tiny amax, the largest
      floats, exact ties between levels) and quantize_row_mxfp4_ref's bytes.
      The binade corners are found with the C library's log2f, which is
      what ggml calls.
  MXFP4.exp.q.bin / MXFP4.exp.deq.f32: 256 blocks, block i with e = i and
      qs[j] = j | (15-j) << 4 (every nibble in both halves), and
      dequantize_row_mxfp4's output.

types.json and SHA256SUMS are written in shared/quant's format.
"""
import ctypes
import hashlib
import json
import math
import os
import random
import struct
import sys

MXFP4, Q8_0 = 39, 8
ROWS, COLS = 8, 512
SEED = 20261126 + MXFP4

here = os.path.dirname(os.path.abspath(__file__))
libdir = sys.argv[1]
base = ctypes.CDLL(os.path.join(libdir, "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
cpu = ctypes.CDLL(os.path.join(libdir, "libggml-cpu.so"), mode=ctypes.RTLD_GLOBAL)

to_float_t = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
from_float_t = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
vec_dot_t = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                             ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)


class TypeTraits(ctypes.Structure):
    _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64),
                ("blck_size_interleave", ctypes.c_int64), ("type_size", ctypes.c_size_t),
                ("is_quantized", ctypes.c_bool), ("to_float", to_float_t), ("from_float_ref", from_float_t)]


class TypeTraitsCPU(ctypes.Structure):
    _fields_ = [("from_float", from_float_t), ("vec_dot", vec_dot_t), ("vec_dot_type", ctypes.c_int),
                ("nrows", ctypes.c_int64)]


base.ggml_get_type_traits.restype = ctypes.POINTER(TypeTraits)
base.ggml_quantize_chunk.restype = ctypes.c_size_t
base.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                     ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
base.quantize_row_mxfp4_ref.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
base.dequantize_row_mxfp4.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
cpu.ggml_get_type_traits_cpu.restype = ctypes.POINTER(TypeTraitsCPU)
cpu.ggml_cpu_init()


def f32(v):
    """Rounds a Python float to float32."""
    return struct.unpack("<f", struct.pack("<f", v))[0]


def bits_f32(b):
    return struct.unpack("<f", struct.pack("<I", b))[0]


def fbuf(vals):
    return (ctypes.c_float * len(vals))(*vals)


def write(name, data):
    with open(os.path.join(here, name), "wb") as f:
        f.write(bytes(data))


# --- The 8 x 512 case, as shared/quant makes it. ---
rng = random.Random(SEED)
W = [f32(rng.gauss(0, 1)) for _ in range(ROWS * COLS)]
for i in rng.sample(range(ROWS * COLS), 12):
    W[i] = f32(rng.choice((-1, 1)) * rng.uniform(6, 16))
x = [f32(rng.gauss(0, 1)) for _ in range(COLS)]
for i in rng.sample(range(COLS), 2):
    x[i] = f32(rng.choice((-1, 1)) * rng.uniform(6, 10))

tr = base.ggml_get_type_traits(MXFP4).contents
tc = cpu.ggml_get_type_traits_cpu(MXFP4).contents
assert tr.blck_size == 32 and tr.type_size == 17 and tc.vec_dot_type == Q8_0
row_bytes = COLS // 32 * 17
xq_bytes = COLS // 32 * 34

Wb = fbuf(W)
Wq = (ctypes.c_uint8 * (ROWS * row_bytes))()
assert base.ggml_quantize_chunk(MXFP4, Wb, Wq, 0, ROWS, COLS, None) == ROWS * row_bytes
Wdeq = (ctypes.c_float * (ROWS * COLS))()
tr.to_float(ctypes.cast(Wq, ctypes.c_void_p), ctypes.cast(Wdeq, ctypes.c_void_p), ROWS * COLS)
xb = fbuf(x)
xq = (ctypes.c_uint8 * xq_bytes)()
cpu.ggml_get_type_traits_cpu(Q8_0).contents.from_float(ctypes.cast(xb, ctypes.c_void_p),
                                                       ctypes.cast(xq, ctypes.c_void_p), COLS)
y = (ctypes.c_float * ROWS)()
for r in range(ROWS):
    tc.vec_dot(COLS, ctypes.addressof(y) + 4 * r, 0, ctypes.addressof(Wq) + r * row_bytes, 0,
               ctypes.addressof(xq), 0, 1)

write("MXFP4.W.f32", Wb)
write("MXFP4.x.f32", xb)
write("MXFP4.Wq.bin", Wq)
write("MXFP4.Wdeq.f32", Wdeq)
write("MXFP4.xq.bin", xq)
write("MXFP4.y.f32", y)

# --- Quantizer corners. ---
erng = random.Random(SEED + 1)
blocks = []


def block_with_amax(amax, sign=1):
    """amax at a random position, the rest normal values up to amax/2."""
    b = [f32(erng.gauss(0, 1) * amax / 8) for _ in range(32)]
    b = [max(-amax / 2, min(amax / 2, v)) for v in b]
    b[erng.randrange(32)] = f32(sign * amax)
    return b


# amax n floats below 2^K for n = c and c+1, where c is the number of floats
# below 2^K for which libm's log2f rounds to K (0 to 44, depending on K): the
# last amax of the binade given exponent K + 125 and the first given K + 124.
libm = ctypes.CDLL("libm.so.6")
libm.log2f.restype = ctypes.c_float
libm.log2f.argtypes = [ctypes.c_float]
for K in list(range(-149, -120)) + [-100, -64, -63, -33, -32, -31, -16, -15, -9, -8, -7, -5, -4, -3, -2, -1,
                                    0, 1, 2, 3, 4, 5, 8, 9, 16, 17, 32, 33, 64, 65, 100, 127, 128]:
    top = 0x7F800000 if K == 128 else struct.unpack("<I", struct.pack("<f", math.ldexp(1, K)))[0]
    c = 0
    while top - c - 1 > 0 and math.floor(libm.log2f(bits_f32(top - c - 1))) == K:
        c += 1
    for n in (c, c + 1):
        if (n == 0 and K == 128) or top - n <= 0:
            continue
        blocks.append(block_with_amax(bits_f32(top - n), erng.choice((-1, 1))))

# Exact ties between neighbouring levels with d = 1 (amax 8 gives e = 128),
# and the floats next to them; zero, negative zero and one-sided blocks.
halves = [0.5, 1.5, 2.5, 3.5, 5.0, 7.0, 10.0, 14.0]
for nudge in (0, -1, 1):
    vals = []
    for h in halves + [-v for v in halves]:
        v = f32(h)
        if nudge:
            v = math.nextafter(v, nudge * math.inf)
        vals.append(f32(v))
    vals += [8.0, -8.0] + [f32(erng.uniform(-8, 8)) for _ in range(14)]
    blocks.append(vals[:32])
blocks.append([0.0] * 32)
blocks.append([-0.0] * 32)
blocks.append([f32(abs(erng.gauss(0, 1))) for _ in range(32)])
blocks.append([f32(-abs(erng.gauss(0, 1))) for _ in range(32)])
# Subnormal scales (e = 0, 1), and the same ties at e = 0.
blocks.append([f32(math.ldexp(h, -128)) for h in halves + [-v for v in halves]] + [f32(math.ldexp(8, -128))] * 16)
for e in range(0, 3):
    blocks.append(block_with_amax(math.ldexp(8 + 7.9 * erng.random(), e - 128)))
# Largest floats.
blocks.append(block_with_amax(3.4028234663852886e38))
blocks.append(block_with_amax(1.7e38, -1))

edge = [v for b in blocks for v in b]
eb = fbuf(edge)
eq = (ctypes.c_uint8 * (len(blocks) * 17))()
base.quantize_row_mxfp4_ref(eb, eq, len(edge))
write("MXFP4.edge.f32", eb)
write("MXFP4.edge.q.bin", eq)

# --- Every exponent through the decoder. ---
xe = bytearray()
for e in range(256):
    xe.append(e)
    xe += bytes(j | (15 - j) << 4 for j in range(16))
xeb = (ctypes.c_uint8 * len(xe)).from_buffer(xe)
xd = (ctypes.c_float * (256 * 32))()
base.dequantize_row_mxfp4(xeb, xd, 256 * 32)
write("MXFP4.exp.q.bin", xeb)
write("MXFP4.exp.deq.f32", xd)

# --- types.json and SHA256SUMS. ---
exact = []
for r in range(ROWS):
    s = 0.0
    for c in range(COLS):
        s += Wdeq[r * COLS + c] * (struct.unpack("<e", bytes(xq[c // 32 * 34:c // 32 * 34 + 2]))[0] *
                                    struct.unpack("<b", bytes([xq[c // 32 * 34 + 2 + c % 32]]))[0])
    exact.append(s)
maxy = max(abs(v) for v in y)
info = {"MXFP4": {
    "ggml_type_id": MXFP4, "type_name": tr.type_name.decode(), "block_size": 32, "block_bytes": 17,
    "row_bytes": row_bytes, "vec_dot_type": "Q8_0", "xq_row_bytes": xq_bytes, "seed": SEED,
    "max_abs_y_minus_exact": max(abs(y[r] - exact[r]) for r in range(ROWS)),
    "max_rel_y_minus_exact": max(abs(y[r] - exact[r]) for r in range(ROWS)) / maxy,
    "max_abs_Wdeq_minus_W": max(abs(Wdeq[i] - W[i]) for i in range(ROWS * COLS)),
}}
with open(os.path.join(here, "types.json"), "w") as f:
    json.dump(info, f, indent=1)
    f.write("\n")
names = sorted(n for n in os.listdir(here) if n.startswith("MXFP4.")) + ["types.json"]
with open(os.path.join(here, "SHA256SUMS"), "w") as f:
    for n in names:
        with open(os.path.join(here, n), "rb") as g:
            f.write(hashlib.sha256(g.read()).hexdigest() + "  " + n + "\n")

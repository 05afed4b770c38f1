#!/usr/bin/env python3
# Writes glibc.txt: inputs and glibc's results of sinf, cosf, expf, logf, tanhf
# (float32 bits, hex), for kernels/libmf's test. Run on a glibc 2.28-2.40
# x86-64 system (Debian 12 has 2.36): python3 make_glibc.py > glibc.txt
import ctypes, math, random, struct

libm = ctypes.CDLL("libm.so.6")
for name in ("sinf", "cosf", "expf", "logf", "tanhf"):
    fn = getattr(libm, name)
    fn.restype, fn.argtypes = ctypes.c_float, [ctypes.c_float]

def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]

def bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]

r = random.Random(2026)
trig = [f32(r.uniform(-4, 4)) for _ in range(1500)]
trig += [f32(r.uniform(-120, 120)) for _ in range(1500)]
trig += [f32(r.uniform(-1e5, 1e5)) for _ in range(1500)]
trig += [f32(math.exp(r.uniform(-20, 30))) for _ in range(500)]
# RoPE angles as ggml makes them: pos · base^(-2i/d), iterated in float32
for base, d in ((10000.0, 64), (10000.0, 128), (500000.0, 128), (1e6, 128)):
    ts = f32(math.pow(base, f32(-2.0 / d)))
    for pos in range(0, 8192, 389):
        th = f32(float(pos))
        for _ in range(d // 2):
            trig.append(th)
            th = f32(th * ts)
exps = [f32(r.uniform(-20, 20)) for _ in range(3000)] + [f32(r.uniform(-104, 89)) for _ in range(1000)]
logs = [f32(r.uniform(0.5, 3)) for _ in range(2000)] + [f32(math.exp(r.uniform(-100, 88))) for _ in range(2000)]
logs += [f32(r.uniform(1e-45, 1e-38)) for _ in range(200)]  # subnormals
tanhs = [f32(r.uniform(-3, 3)) for _ in range(3000)] + [f32(r.uniform(-30, 30)) for _ in range(1000)]
tanhs += [f32(r.uniform(-1e-3, 1e-3)) for _ in range(300)] + [f32(math.exp(r.uniform(-60, 0))) for _ in range(300)]
for name, xs in (("sinf", trig), ("cosf", trig), ("expf", exps), ("logf", logs), ("tanhf", tanhs)):
    fn = getattr(libm, name)
    for x in xs:
        print(name, "%08x" % bits(x), "%08x" % bits(fn(x)))

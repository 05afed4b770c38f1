//go:build !purego

// AMX kernels, written by hand: avo v0.6.0 knows no AMX instructions and
// cannot emit raw bytes, and Go's assembler does not know them either, so
// the tile instructions are BYTE sequences, VEX-encoded as the Intel SDM
// (vol. 2, "LDTILECFG", "TILELOADD", "TDPBUSD"...) gives them and checked
// with GNU objdump 2.40. The registers are fixed by the encodings: tile
// loads and stores address (SI)(DX*1) or (SI)(BX*1) (base SI, the row
// stride in DX or BX), LDTILECFG reads (SI). TestAMXDPBUSD checks them
// against integer arithmetic in Go.

#include "textflag.h"

// LDTILECFG (SI): VEX.128.NP.0F38.W0 49 /0, ModRM 00 000 110.
#define LDTILECFG_SI BYTE $0xc4; BYTE $0xe2; BYTE $0x78; BYTE $0x49; BYTE $0x06
// TILERELEASE: VEX.128.NP.0F38.W0 49 C0.
#define TILERELEASE BYTE $0xc4; BYTE $0xe2; BYTE $0x78; BYTE $0x49; BYTE $0xc0
// TILEZERO tmmT: VEX.128.F2.0F38.W0 49, ModRM 11 T 000.
#define TILEZERO(T) BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x49; BYTE $(0xc0+8*T)
// TILELOADD tmmT, (SI)(DX*1): VEX.128.F2.0F38.W0 4B, ModRM 00 T 100, SIB 00 010 110.
#define TILELOADD_DX(T) BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x4b; BYTE $(0x04+8*T); BYTE $0x16
// TILELOADD tmmT, (SI)(BX*1): SIB 00 011 110.
#define TILELOADD_BX(T) BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x4b; BYTE $(0x04+8*T); BYTE $0x1e
// TILELOADD tmmT, (SI)(DI*1): SIB 00 111 110 (DI = 0: every row the same 64 bytes).
#define TILELOADD_DI(T) BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x4b; BYTE $(0x04+8*T); BYTE $0x3e
// TILESTORED (SI)(BX*1), tmmT: VEX.128.F3.0F38.W0 4B, ModRM 00 T 100, SIB 00 011 110.
#define TILESTORED_BX(T) BYTE $0xc4; BYTE $0xe2; BYTE $0x7a; BYTE $0x4b; BYTE $(0x04+8*T); BYTE $0x1e
// TDPBUSD tmmC, tmmA, tmmB (C += A·B, A unsigned bytes, B signed):
// VEX.128.66.0F38.W0 5E, vvvv = ~B, ModRM 11 C A.
#define TDPBUSD(C, A, B) BYTE $0xc4; BYTE $0xe2; BYTE $(((15-B)<<3)|1); BYTE $0x5e; BYTE $(0xc0+8*C+A)
// TDPBSSD tmmC, tmmA, tmmB (both signed): VEX.128.F2.0F38.W0 5E.
#define TDPBSSD(C, A, B) BYTE $0xc4; BYTE $0xe2; BYTE $(((15-B)<<3)|3); BYTE $0x5e; BYTE $(0xc0+8*C+A)

// amxTestCfg: palette 1; tmm0, tmm1, tmm2: 16 rows of 64 bytes.
DATA amxTestCfg<>+0(SB)/8, $1
DATA amxTestCfg<>+8(SB)/8, $0
DATA amxTestCfg<>+16(SB)/8, $0x0000004000400040
DATA amxTestCfg<>+24(SB)/8, $0
DATA amxTestCfg<>+32(SB)/8, $0
DATA amxTestCfg<>+40(SB)/8, $0
DATA amxTestCfg<>+48(SB)/8, $0x0000000000101010
DATA amxTestCfg<>+56(SB)/8, $0
GLOBL amxTestCfg<>(SB), RODATA|NOPTR, $64

// func amxDPBUSD(a, b *byte, c *int32)
TEXT ·amxDPBUSD(SB), NOSPLIT, $0-24
	LEAQ amxTestCfg<>(SB), SI
	LDTILECFG_SI
	MOVQ $64, BX
	MOVQ c+16(FP), SI
	TILELOADD_BX(0)
	MOVQ a+0(FP), SI
	TILELOADD_BX(1)
	MOVQ b+8(FP), SI
	TILELOADD_BX(2)
	TDPBUSD(0, 1, 2)
	MOVQ c+16(FP), SI
	TILESTORED_BX(0)
	TILERELEASE
	RET

// The Q4_K kernel: 16 weight rows × 16 tokens, over nb super-blocks, in
// the avx512 level's Q4_K numerics (_asm/q4k512.go: per (row, token,
// sub-block s) u = d·float(sc_s·Σq·x); u −= (dmin·m_s)·B_s; acc_s += dx·u;
// at the end ((a0+a4)+(a2+a6))+((a1+a5)+(a3+a7)), hsum8's order). The
// integer sums Σq·x come from TDPBUSD, sixteen rows by sixteen tokens per
// sub-block; float(sc_s)·float(Σq·x) is the exact integer sc_s·Σq·x
// (|·| < 2^22), so every float operation is the avx512 kernels' own.
//
// Layouts (gemm_amx.go writes them): wa, per super-block 5248 bytes:
// sub-block s's A tile at 512s (16 rows of its 32 quants, one byte each),
// row m's float(sc_s) at 4096+64m+4s and dmin·m_s at 4128+64m+4s, d at
// 5120+8m. xa, per super-block 4672 bytes: sub-block s's B tile at 512s
// (8 rows of 64 bytes: quants 4k..4k+3 of each of the 16 tokens), B_s of
// the 16 tokens at 4096+64s, dx at 4608. scr: 24 KiB, 64-byte aligned:
// the accumulators acc_s of row m at 1024s+64m (16 tokens), then four
// areas of four stored C tiles at 8192, 12288, 16384 and 20480.

// amxQ4KCfg: palette 1; tmm0..3 (C): 16 rows of 64 bytes; tmm4, tmm5 (A):
// 16 rows of 32; tmm6, tmm7 (B): 8 rows of 64.
DATA amxQ4KCfg<>+0(SB)/8, $1
DATA amxQ4KCfg<>+8(SB)/8, $0
DATA amxQ4KCfg<>+16(SB)/8, $0x0040004000400040
DATA amxQ4KCfg<>+24(SB)/8, $0x0040004000200020
DATA amxQ4KCfg<>+32(SB)/8, $0
DATA amxQ4KCfg<>+40(SB)/8, $0
DATA amxQ4KCfg<>+48(SB)/8, $0x0808101010101010
DATA amxQ4KCfg<>+56(SB)/8, $0
GLOBL amxQ4KCfg<>(SB), RODATA|NOPTR, $64

// Registers: DI the super-block's wa, R8 its xa, R9 scr (accumulators),
// R10, R12 (sub-blocks 0..3, 4..7 of the first super-block of a pair) and
// R11, R13 (of the second) the areas of stored C tiles, CX super-blocks
// left; SI the tile address, DX = 32 and BX = 64 the tile strides; Z30 and
// Z29 the tokens' dx, Z31 and Z28 their B_s (first and second super-block).

// Q4KAMX4 computes the sums of sub-blocks 4h..4h+3 of the super-block at
// DI+wo, R8+xo into tmm0..3 and stores them at C (C tile i: row m, token n
// at 1024i+64m+4n).
#define Q4KAMX4(h, wo, xo, C) \
	TILEZERO(0); TILEZERO(1); TILEZERO(2); TILEZERO(3); \
	LEAQ wo+2048*h(DI), SI; TILELOADD_DX(4); LEAQ xo+2048*h(R8), SI; TILELOADD_BX(6); TDPBUSD(0, 4, 6); \
	LEAQ wo+2048*h+512(DI), SI; TILELOADD_DX(5); LEAQ xo+2048*h+512(R8), SI; TILELOADD_BX(7); TDPBUSD(1, 5, 7); \
	LEAQ wo+2048*h+1024(DI), SI; TILELOADD_DX(4); LEAQ xo+2048*h+1024(R8), SI; TILELOADD_BX(6); TDPBUSD(2, 4, 6); \
	LEAQ wo+2048*h+1536(DI), SI; TILELOADD_DX(5); LEAQ xo+2048*h+1536(R8), SI; TILELOADD_BX(7); TDPBUSD(3, 5, 7); \
	MOVQ C, SI; TILESTORED_BX(0); LEAQ 1024(C), SI; TILESTORED_BX(1); \
	LEAQ 2048(C), SI; TILESTORED_BX(2); LEAQ 3072(C), SI; TILESTORED_BX(3)

// Q4KROW: row m of sub-block s, from C tile i at C, in Z.
#define Q4KROW(s, i, C, m, Z) \
	VCVTDQ2PS i*1024+m*64(C), Z; \
	VMULPS.BCST 4096+m*64+s*4(DI), Z, Z; \
	VMULPS.BCST 5120+m*8(DI), Z, Z; \
	VFNMADD231PS.BCST 4128+m*64+s*4(DI), Z31, Z; \
	VFMADD213PS s*1024+m*64(R9), Z30, Z; \
	VMOVUPS Z, s*1024+m*64(R9)

// Q4KSUB: the float stage of sub-block s (C tile i at C), sixteen rows.
#define Q4KSUB(s, i, C) \
	VMOVUPS 4096+s*64(R8), Z31; \
	Q4KROW(s, i, C, 0, Z0); Q4KROW(s, i, C, 1, Z1); Q4KROW(s, i, C, 2, Z2); Q4KROW(s, i, C, 3, Z3); \
	Q4KROW(s, i, C, 4, Z4); Q4KROW(s, i, C, 5, Z5); Q4KROW(s, i, C, 6, Z6); Q4KROW(s, i, C, 7, Z7); \
	Q4KROW(s, i, C, 8, Z8); Q4KROW(s, i, C, 9, Z9); Q4KROW(s, i, C, 10, Z10); Q4KROW(s, i, C, 11, Z11); \
	Q4KROW(s, i, C, 12, Z12); Q4KROW(s, i, C, 13, Z13); Q4KROW(s, i, C, 14, Z14); Q4KROW(s, i, C, 15, Z15)

// Q4KROW2: row m of sub-block s for two super-blocks (C tile i at C and
// at D; the second's wa and xa 5248 and 4672 bytes on): the accumulators
// loaded and stored once for both, updated in super-block order.
#define Q4KROW2(s, i, C, D, m, Z, W) \
	VCVTDQ2PS i*1024+m*64(C), Z; \
	VMULPS.BCST 4096+m*64+s*4(DI), Z, Z; \
	VMULPS.BCST 5120+m*8(DI), Z, Z; \
	VFNMADD231PS.BCST 4128+m*64+s*4(DI), Z31, Z; \
	VFMADD213PS s*1024+m*64(R9), Z30, Z; \
	VCVTDQ2PS i*1024+m*64(D), W; \
	VMULPS.BCST 5248+4096+m*64+s*4(DI), W, W; \
	VMULPS.BCST 5248+5120+m*8(DI), W, W; \
	VFNMADD231PS.BCST 5248+4128+m*64+s*4(DI), Z28, W; \
	VFMADD231PS Z29, W, Z; \
	VMOVUPS Z, s*1024+m*64(R9)

// Q4KSUB2: Q4KSUB for two super-blocks.
#define Q4KSUB2(s, i, C, D) \
	VMOVUPS 4096+s*64(R8), Z31; \
	VMOVUPS 4672+4096+s*64(R8), Z28; \
	Q4KROW2(s, i, C, D, 0, Z0, Z16); Q4KROW2(s, i, C, D, 1, Z1, Z17); Q4KROW2(s, i, C, D, 2, Z2, Z18); Q4KROW2(s, i, C, D, 3, Z3, Z19); \
	Q4KROW2(s, i, C, D, 4, Z4, Z20); Q4KROW2(s, i, C, D, 5, Z5, Z21); Q4KROW2(s, i, C, D, 6, Z6, Z22); Q4KROW2(s, i, C, D, 7, Z7, Z23); \
	Q4KROW2(s, i, C, D, 8, Z8, Z24); Q4KROW2(s, i, C, D, 9, Z9, Z25); Q4KROW2(s, i, C, D, 10, Z10, Z26); Q4KROW2(s, i, C, D, 11, Z11, Z27); \
	Q4KROW2(s, i, C, D, 12, Z12, Z16); Q4KROW2(s, i, C, D, 13, Z13, Z17); Q4KROW2(s, i, C, D, 14, Z14, Z18); Q4KROW2(s, i, C, D, 15, Z15, Z19)

// Q4KOUT: row m's sixteen results (one per token), hsum8's order over the
// sub-blocks, stored at R10 + 64m for AMXT16.
#define Q4KOUT(m) \
	VMOVUPS 0*1024+m*64(R9), Z0; VADDPS 4*1024+m*64(R9), Z0, Z0; \
	VMOVUPS 2*1024+m*64(R9), Z1; VADDPS 6*1024+m*64(R9), Z1, Z1; \
	VADDPS Z1, Z0, Z0; \
	VMOVUPS 1*1024+m*64(R9), Z2; VADDPS 5*1024+m*64(R9), Z2, Z2; \
	VMOVUPS 3*1024+m*64(R9), Z3; VADDPS 7*1024+m*64(R9), Z3, Z3; \
	VADDPS Z3, Z2, Z2; \
	VADDPS Z2, Z0, Z0; \
	VMOVUPS Z0, m*64(R10)

// AMXT16 transposes the 16×16 float32 at R10 (row m: the 16 tokens of
// weight row m) and stores token n's 16 results, 64 bytes, at R11 + n·ldd
// (AX = ldd): one full-line store per token instead of a scatter per row,
// whose sixteen lines ldd apart (a power of two for most matrices) fight
// over one L1 set (the scatter cost 36% of the kernel).
#define T16A(i, A, B) \
	VMOVUPS (128*i)(R10), Z16; \
	VUNPCKLPS (128*i+64)(R10), Z16, A; \
	VUNPCKHPS (128*i+64)(R10), Z16, B
#define T16B(T0, T1, T2, T3, U0, U1, U2, U3) \
	VUNPCKLPD T2, T0, U0; \
	VUNPCKHPD T2, T0, U1; \
	VUNPCKLPD T3, T1, U2; \
	VUNPCKHPD T3, T1, U3
#define T16C(U0, U4, U8, U12) \
	VSHUFF32X4 $0x44, U4, U0, Z0; \
	VSHUFF32X4 $0xee, U4, U0, Z1; \
	VSHUFF32X4 $0x44, U12, U8, Z2; \
	VSHUFF32X4 $0xee, U12, U8, Z3; \
	VSHUFF32X4 $0x88, Z2, Z0, Z4; \
	VSHUFF32X4 $0xdd, Z2, Z0, Z5; \
	VSHUFF32X4 $0x88, Z3, Z1, Z6; \
	VSHUFF32X4 $0xdd, Z3, Z1, Z7; \
	VMOVUPS Z4, (R13); \
	VMOVUPS Z5, (R13)(R12*1); \
	VMOVUPS Z6, (R13)(R12*2); \
	VMOVUPS Z7, (R13)(BX*1); \
	ADDQ AX, R13

// func amxQ4_K(w *byte, rb int, wa, xa *byte, nb int, scr *byte, dst *float32, ldd int)
TEXT ·amxQ4_K(SB), NOSPLIT, $0-64
	LEAQ amxQ4KCfg<>(SB), SI
	LDTILECFG_SI
	MOVQ wa+16(FP), DI
	MOVQ xa+24(FP), R8
	MOVQ nb+32(FP), CX
	MOVQ scr+40(FP), R9
	LEAQ 8192(R9), R10
	MOVQ $32, DX
	MOVQ $64, BX
	// Zero the accumulators.
	VPXORD Z0, Z0, Z0
	MOVQ R9, R11
	MOVQ $32, AX
zero:
	VMOVUPS Z0, 0(R11)
	VMOVUPS Z0, 64(R11)
	VMOVUPS Z0, 128(R11)
	VMOVUPS Z0, 192(R11)
	ADDQ $256, R11
	DECQ AX
	JNZ zero

	// Super-blocks in pairs: the tiles of both computed and stored (four
	// areas of C tiles), then the float stage with one load and one store
	// of the accumulators for the two. (AMX tile loads and stores do not
	// overlap the vector work on this machine: NOTES.md.)
	LEAQ 4096(R10), R12
	LEAQ 8192(R10), R11
	LEAQ 12288(R10), R13
	CMPQ CX, $2
	JLT single

pair:
	Q4KAMX4(0, 0, 0, R10)
	Q4KAMX4(1, 0, 0, R12)
	Q4KAMX4(0, 5248, 4672, R11)
	Q4KAMX4(1, 5248, 4672, R13)
	VMOVUPS 4608(R8), Z30
	VMOVUPS 4672+4608(R8), Z29
	Q4KSUB2(0, 0, R10, R11)
	Q4KSUB2(1, 1, R10, R11)
	Q4KSUB2(2, 2, R10, R11)
	Q4KSUB2(3, 3, R10, R11)
	Q4KSUB2(4, 0, R12, R13)
	Q4KSUB2(5, 1, R12, R13)
	Q4KSUB2(6, 2, R12, R13)
	Q4KSUB2(7, 3, R12, R13)
	ADDQ $2*5248, DI
	ADDQ $2*4672, R8
	SUBQ $2, CX
	CMPQ CX, $2
	JGE pair

single:
	TESTQ CX, CX
	JZ done
	Q4KAMX4(0, 0, 0, R10)
	Q4KAMX4(1, 0, 0, R12)
	VMOVUPS 4608(R8), Z30
	Q4KSUB(0, 0, R10)
	Q4KSUB(1, 1, R10)
	Q4KSUB(2, 2, R10)
	Q4KSUB(3, 3, R10)
	Q4KSUB(4, 0, R12)
	Q4KSUB(5, 1, R12)
	Q4KSUB(6, 2, R12)
	Q4KSUB(7, 3, R12)

done:
	TILERELEASE
	Q4KOUT(0)
	Q4KOUT(1)
	Q4KOUT(2)
	Q4KOUT(3)
	Q4KOUT(4)
	Q4KOUT(5)
	Q4KOUT(6)
	Q4KOUT(7)
	Q4KOUT(8)
	Q4KOUT(9)
	Q4KOUT(10)
	Q4KOUT(11)
	Q4KOUT(12)
	Q4KOUT(13)
	Q4KOUT(14)
	Q4KOUT(15)
	T16A(0, Z0, Z1)
	T16A(1, Z2, Z3)
	T16A(2, Z4, Z5)
	T16A(3, Z6, Z7)
	T16A(4, Z8, Z9)
	T16A(5, Z10, Z11)
	T16A(6, Z12, Z13)
	T16A(7, Z14, Z15)
	T16B(Z0, Z1, Z2, Z3, Z16, Z17, Z18, Z19)
	T16B(Z4, Z5, Z6, Z7, Z20, Z21, Z22, Z23)
	T16B(Z8, Z9, Z10, Z11, Z24, Z25, Z26, Z27)
	T16B(Z12, Z13, Z14, Z15, Z28, Z29, Z30, Z31)
	MOVQ dst+48(FP), R13
	MOVQ ldd+56(FP), AX
	LEAQ (AX*4), R12
	LEAQ (R12)(R12*2), BX
	T16C(Z16, Z20, Z24, Z28)
	T16C(Z17, Z21, Z25, Z29)
	T16C(Z18, Z22, Z26, Z30)
	T16C(Z19, Z23, Z27, Z31)
	VZEROUPPER
	RET

// The Q8_0 kernel: 16 weight rows × 16 tokens, over nb 32-quant blocks, in
// the avx512 level's block lanes (_asm/gemm512.go: block 4i+j of each
// group of sixteen owns lane 4j+i; per (row, token) and block s = Σw·y
// exactly, acc = fma(dw·dx, float(s), acc); at the end the sixteen lanes in
// hsum16's order: ((l0+l8)+(l4+l12)+...) as reduce8 of the halves' sum).
// s comes from TDPBSSD (signed × signed, no +128 offset): the same
// integer as the VNNI kernels' Σ(w+128)·y − 128·Σy, so the results are
// bit for bit theirs; the blocks of a last partial group are skipped
// where the VNNI kernels add zero products (acc + 0 = acc: an
// accumulator never holds −0).
//
// Layouts: w, the rows in the file's layout (rb bytes apart; A tile of
// block b: 16 rows of 32 bytes at w + 34b + 2, stride rb); wa, per block
// 64 bytes: dw of the 16 rows as float32; xa, per block 576 bytes: the B
// tile (8 rows of 64 bytes: quants 4k..4k+3 of each of 16 tokens) and at
// 512 the tokens' dx. scr: 24 KiB, 64-byte aligned: the accumulators of
// lane l, row m at 1024l+64m, the stored C tile at 16384.

// amxLaneOff: block g (0..15) of a group: its lane's accumulators at
// 1024·(4(g%4) + g/4).
DATA amxLaneOff<>+0(SB)/8, $0
DATA amxLaneOff<>+8(SB)/8, $4096
DATA amxLaneOff<>+16(SB)/8, $8192
DATA amxLaneOff<>+24(SB)/8, $12288
DATA amxLaneOff<>+32(SB)/8, $1024
DATA amxLaneOff<>+40(SB)/8, $5120
DATA amxLaneOff<>+48(SB)/8, $9216
DATA amxLaneOff<>+56(SB)/8, $13312
DATA amxLaneOff<>+64(SB)/8, $2048
DATA amxLaneOff<>+72(SB)/8, $6144
DATA amxLaneOff<>+80(SB)/8, $10240
DATA amxLaneOff<>+88(SB)/8, $14336
DATA amxLaneOff<>+96(SB)/8, $3072
DATA amxLaneOff<>+104(SB)/8, $7168
DATA amxLaneOff<>+112(SB)/8, $11264
DATA amxLaneOff<>+120(SB)/8, $15360
GLOBL amxLaneOff<>(SB), RODATA|NOPTR, $128

// Q80ROW: row m of the block (C tile at R10, dw at R13, the lane's
// accumulators at R12, dx in Z30).
#define Q80ROW(m, Z, V) \
	VCVTDQ2PS m*64(R10), Z; \
	VMULPS.BCST m*4(R13), Z30, V; \
	VFMADD213PS m*64(R12), V, Z; \
	VMOVUPS Z, m*64(R12)

// Q80OUT: row m's sixteen results, hsum16's order over the lanes, stored
// at R10 + 64m for AMXT16.
#define Q80OUT(m) \
	VMOVUPS 0*1024+m*64(R9), Z0; VADDPS 8*1024+m*64(R9), Z0, Z0; \
	VMOVUPS 4*1024+m*64(R9), Z1; VADDPS 12*1024+m*64(R9), Z1, Z1; \
	VADDPS Z1, Z0, Z0; \
	VMOVUPS 2*1024+m*64(R9), Z1; VADDPS 10*1024+m*64(R9), Z1, Z1; \
	VMOVUPS 6*1024+m*64(R9), Z2; VADDPS 14*1024+m*64(R9), Z2, Z2; \
	VADDPS Z2, Z1, Z1; \
	VADDPS Z1, Z0, Z0; \
	VMOVUPS 1*1024+m*64(R9), Z1; VADDPS 9*1024+m*64(R9), Z1, Z1; \
	VMOVUPS 5*1024+m*64(R9), Z2; VADDPS 13*1024+m*64(R9), Z2, Z2; \
	VADDPS Z2, Z1, Z1; \
	VMOVUPS 3*1024+m*64(R9), Z2; VADDPS 11*1024+m*64(R9), Z2, Z2; \
	VMOVUPS 7*1024+m*64(R9), Z3; VADDPS 15*1024+m*64(R9), Z3, Z3; \
	VADDPS Z3, Z2, Z2; \
	VADDPS Z2, Z1, Z1; \
	VADDPS Z1, Z0, Z0; \
	VMOVUPS Z0, m*64(R10)

// func amxQ8_0(w *byte, rb int, wa, xa *byte, nb int, scr *byte, dst *float32, ldd int)
TEXT ·amxQ8_0(SB), NOSPLIT, $0-64
	LEAQ amxQ4KCfg<>(SB), SI
	LDTILECFG_SI
	MOVQ w+0(FP), DI
	ADDQ $2, DI
	MOVQ rb+8(FP), DX
	MOVQ wa+16(FP), R13
	MOVQ xa+24(FP), R8
	MOVQ nb+32(FP), CX
	MOVQ scr+40(FP), R9
	LEAQ 16384(R9), R10
	LEAQ amxLaneOff<>(SB), R11
	MOVQ $64, BX
	// Zero the accumulators (16 KiB).
	VPXORD Z0, Z0, Z0
	MOVQ R9, R12
	MOVQ $64, AX
q80zero:
	VMOVUPS Z0, 0(R12)
	VMOVUPS Z0, 64(R12)
	VMOVUPS Z0, 128(R12)
	VMOVUPS Z0, 192(R12)
	ADDQ $256, R12
	DECQ AX
	JNZ q80zero
	XORQ AX, AX // the block's place in its group

q80block:
	TILEZERO(0)
	MOVQ DI, SI
	TILELOADD_DX(4)
	MOVQ R8, SI
	TILELOADD_BX(6)
	TDPBSSD(0, 4, 6)
	MOVQ R10, SI
	TILESTORED_BX(0)
	MOVQ (R11)(AX*8), R12
	ADDQ R9, R12
	VMOVUPS 512(R8), Z30
	Q80ROW(0, Z0, Z16)
	Q80ROW(1, Z1, Z17)
	Q80ROW(2, Z2, Z18)
	Q80ROW(3, Z3, Z19)
	Q80ROW(4, Z4, Z20)
	Q80ROW(5, Z5, Z21)
	Q80ROW(6, Z6, Z22)
	Q80ROW(7, Z7, Z23)
	Q80ROW(8, Z8, Z24)
	Q80ROW(9, Z9, Z25)
	Q80ROW(10, Z10, Z26)
	Q80ROW(11, Z11, Z27)
	Q80ROW(12, Z12, Z28)
	Q80ROW(13, Z13, Z29)
	Q80ROW(14, Z14, Z31)
	Q80ROW(15, Z15, Z16)
	ADDQ $34, DI
	ADDQ $576, R8
	ADDQ $64, R13
	INCQ AX
	ANDQ $15, AX
	DECQ CX
	JNZ q80block

	TILERELEASE
	Q80OUT(0)
	Q80OUT(1)
	Q80OUT(2)
	Q80OUT(3)
	Q80OUT(4)
	Q80OUT(5)
	Q80OUT(6)
	Q80OUT(7)
	Q80OUT(8)
	Q80OUT(9)
	Q80OUT(10)
	Q80OUT(11)
	Q80OUT(12)
	Q80OUT(13)
	Q80OUT(14)
	Q80OUT(15)
	T16A(0, Z0, Z1)
	T16A(1, Z2, Z3)
	T16A(2, Z4, Z5)
	T16A(3, Z6, Z7)
	T16A(4, Z8, Z9)
	T16A(5, Z10, Z11)
	T16A(6, Z12, Z13)
	T16A(7, Z14, Z15)
	T16B(Z0, Z1, Z2, Z3, Z16, Z17, Z18, Z19)
	T16B(Z4, Z5, Z6, Z7, Z20, Z21, Z22, Z23)
	T16B(Z8, Z9, Z10, Z11, Z24, Z25, Z26, Z27)
	T16B(Z12, Z13, Z14, Z15, Z28, Z29, Z30, Z31)
	MOVQ dst+48(FP), R13
	MOVQ ldd+56(FP), AX
	LEAQ (AX*4), R12
	LEAQ (R12)(R12*2), BX
	T16C(Z16, Z20, Z24, Z28)
	T16C(Z17, Z21, Z25, Z29)
	T16C(Z18, Z22, Z26, Z30)
	T16C(Z19, Z23, Z27, Z31)
	VZEROUPPER
	RET

// The Q4_0 kernel: amxQ8_0's block lanes over unsigned nibbles (TDPBUSD),
// the sums started from the activations' −8·Σy per block and token (a
// C tile loaded with stride 0), as the VNNI kernels' prepared correction:
// s = Σq·y − 8·Σy exactly. Layouts: wa, per block 576 bytes: the A tile
// (16 rows of the block's 32 quants as bytes) and at 512 dw of the 16 rows;
// xa, per block 640 bytes: amxQ8_0's B tile and dx, and at 576 the
// tokens' −8·Σy as int32. w and rb unused.

// Q40ROW: Q80ROW with dw at R13 + 512.
#define Q40ROW(m, Z, V) \
	VCVTDQ2PS m*64(R10), Z; \
	VMULPS.BCST 512+m*4(R13), Z30, V; \
	VFMADD213PS m*64(R12), V, Z; \
	VMOVUPS Z, m*64(R12)

// func amxQ4_0(w *byte, rb int, wa, xa *byte, nb int, scr *byte, dst *float32, ldd int)
TEXT ·amxQ4_0(SB), NOSPLIT, $0-64
	LEAQ amxQ4KCfg<>(SB), SI
	LDTILECFG_SI
	XORQ DI, DI // the zero stride of the correction rows
	MOVQ $32, DX
	MOVQ wa+16(FP), R13
	MOVQ xa+24(FP), R8
	MOVQ nb+32(FP), CX
	MOVQ scr+40(FP), R9
	LEAQ 16384(R9), R10
	LEAQ amxLaneOff<>(SB), R11
	MOVQ $64, BX
	// Zero the accumulators (16 KiB).
	VPXORD Z0, Z0, Z0
	MOVQ R9, R12
	MOVQ $64, AX
q40zero:
	VMOVUPS Z0, 0(R12)
	VMOVUPS Z0, 64(R12)
	VMOVUPS Z0, 128(R12)
	VMOVUPS Z0, 192(R12)
	ADDQ $256, R12
	DECQ AX
	JNZ q40zero
	XORQ AX, AX // the block's place in its group

q40block:
	LEAQ 576(R8), SI
	TILELOADD_DI(0)
	MOVQ R13, SI
	TILELOADD_DX(4)
	MOVQ R8, SI
	TILELOADD_BX(6)
	TDPBUSD(0, 4, 6)
	MOVQ R10, SI
	TILESTORED_BX(0)
	MOVQ (R11)(AX*8), R12
	ADDQ R9, R12
	VMOVUPS 512(R8), Z30
	Q40ROW(0, Z0, Z16)
	Q40ROW(1, Z1, Z17)
	Q40ROW(2, Z2, Z18)
	Q40ROW(3, Z3, Z19)
	Q40ROW(4, Z4, Z20)
	Q40ROW(5, Z5, Z21)
	Q40ROW(6, Z6, Z22)
	Q40ROW(7, Z7, Z23)
	Q40ROW(8, Z8, Z24)
	Q40ROW(9, Z9, Z25)
	Q40ROW(10, Z10, Z26)
	Q40ROW(11, Z11, Z27)
	Q40ROW(12, Z12, Z28)
	Q40ROW(13, Z13, Z29)
	Q40ROW(14, Z14, Z31)
	Q40ROW(15, Z15, Z16)
	ADDQ $640, R8
	ADDQ $576, R13
	INCQ AX
	ANDQ $15, AX
	DECQ CX
	JNZ q40block

	TILERELEASE
	Q80OUT(0)
	Q80OUT(1)
	Q80OUT(2)
	Q80OUT(3)
	Q80OUT(4)
	Q80OUT(5)
	Q80OUT(6)
	Q80OUT(7)
	Q80OUT(8)
	Q80OUT(9)
	Q80OUT(10)
	Q80OUT(11)
	Q80OUT(12)
	Q80OUT(13)
	Q80OUT(14)
	Q80OUT(15)
	T16A(0, Z0, Z1)
	T16A(1, Z2, Z3)
	T16A(2, Z4, Z5)
	T16A(3, Z6, Z7)
	T16A(4, Z8, Z9)
	T16A(5, Z10, Z11)
	T16A(6, Z12, Z13)
	T16A(7, Z14, Z15)
	T16B(Z0, Z1, Z2, Z3, Z16, Z17, Z18, Z19)
	T16B(Z4, Z5, Z6, Z7, Z20, Z21, Z22, Z23)
	T16B(Z8, Z9, Z10, Z11, Z24, Z25, Z26, Z27)
	T16B(Z12, Z13, Z14, Z15, Z28, Z29, Z30, Z31)
	MOVQ dst+48(FP), R13
	MOVQ ldd+56(FP), AX
	LEAQ (AX*4), R12
	LEAQ (R12)(R12*2), BX
	T16C(Z16, Z20, Z24, Z28)
	T16C(Z17, Z21, Z25, Z29)
	T16C(Z18, Z22, Z26, Z30)
	T16C(Z19, Z23, Z27, Z31)
	VZEROUPPER
	RET

// func amxNibblesQ4_K(dst, w *byte, rb, nb int)
//
// The quants of amxUnpackQ4_K's layout for 16 repacked Q4_K rows (rb bytes
// apart) and nb super-blocks: per row and super-block, the 64 bytes at 16
// (L) and at 80 (H) hold sub-block p's quants 0..7 and 8..15 in the low
// and high nibbles of L's qword p, 16..23 and 24..31 in H's; sub-block p
// of row m goes to dst + 5248b + 512p + 32m as L_lo.p, L_hi.p, H_lo.p,
// H_hi.p (one VPUNPCKLQDQ or VPUNPCKHQDQ per pair of 16-byte halves).
TEXT ·amxNibblesQ4_K(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ w+8(FP), SI
	MOVQ rb+16(FP), DX
	MOVQ nb+24(FP), CX
	MOVL $0x0f0f0f0f, AX
	VPBROADCASTD AX, Z31

q4nblock:
	MOVQ SI, R8
	MOVQ DI, R9
	MOVQ $16, BX

q4nrow:
	VMOVDQU64 16(R8), Z0
	VMOVDQU64 80(R8), Z1
	VPSRLW $4, Z0, Z2
	VPSRLW $4, Z1, Z3
	VPANDD Z31, Z0, Z0
	VPANDD Z31, Z2, Z2
	VPANDD Z31, Z1, Z1
	VPANDD Z31, Z3, Z3
	VPUNPCKLQDQ Z2, Z0, Z4
	VPUNPCKHQDQ Z2, Z0, Z5
	VPUNPCKLQDQ Z3, Z1, Z6
	VPUNPCKHQDQ Z3, Z1, Z7
	VMOVDQU X4, 0(R9)
	VMOVDQU X6, 16(R9)
	VMOVDQU X5, 512(R9)
	VMOVDQU X7, 528(R9)
	VEXTRACTI32X4 $1, Z4, 1024(R9)
	VEXTRACTI32X4 $1, Z6, 1040(R9)
	VEXTRACTI32X4 $1, Z5, 1536(R9)
	VEXTRACTI32X4 $1, Z7, 1552(R9)
	VEXTRACTI32X4 $2, Z4, 2048(R9)
	VEXTRACTI32X4 $2, Z6, 2064(R9)
	VEXTRACTI32X4 $2, Z5, 2560(R9)
	VEXTRACTI32X4 $2, Z7, 2576(R9)
	VEXTRACTI32X4 $3, Z4, 3072(R9)
	VEXTRACTI32X4 $3, Z6, 3088(R9)
	VEXTRACTI32X4 $3, Z5, 3584(R9)
	VEXTRACTI32X4 $3, Z7, 3600(R9)
	ADDQ DX, R8
	ADDQ $32, R9
	DECQ BX
	JNZ q4nrow
	ADDQ $144, SI
	ADDQ $5248, DI
	DECQ CX
	JNZ q4nblock
	VZEROUPPER
	RET

// The Q6_K kernel: 16 weight rows × 16 tokens over nb super-blocks, in the
// avx512 level's Q6_K numerics (_asm/q6k512.go: per (row, token, 16-quant
// sub-block l) S_l = Σq·x − 32·B_l exactly, acc_l += float(S_l)·((d·sc_l)·dx);
// at the end the sixteen lanes in hsum16's order, as amxQ8_0's). TDPBUSD at
// K = 16 per sub-block (the sub-block's 16 quants), from the C tile loaded
// with stride 0 from the tokens' −32·B_l. Layouts: wa, per super-block 5120
// bytes: at 320l sub-block l's A tile (16 rows of 16 quant bytes), then the
// 16 rows' d·float(sc_l); xa, per super-block 5184 bytes: at 320l
// sub-block l's B tile (4 rows of 64 bytes), then the 16 tokens' −32·B_l;
// their dx at 5120. scr as amxQ8_0's (lane l = sub-block l). w, rb unused.

// amxQ6KCfg: palette 1; tmm0..3: 16 rows of 64 bytes; tmm4, tmm5 (A): 16
// rows of 16; tmm6, tmm7 (B): 4 rows of 64.
DATA amxQ6KCfg<>+0(SB)/8, $1
DATA amxQ6KCfg<>+8(SB)/8, $0
DATA amxQ6KCfg<>+16(SB)/8, $0x0040004000400040
DATA amxQ6KCfg<>+24(SB)/8, $0x0040004000100010
DATA amxQ6KCfg<>+32(SB)/8, $0
DATA amxQ6KCfg<>+40(SB)/8, $0
DATA amxQ6KCfg<>+48(SB)/8, $0x0404101010101010
DATA amxQ6KCfg<>+56(SB)/8, $0
GLOBL amxQ6KCfg<>(SB), RODATA|NOPTR, $64

// Q60ROW: row m of the sub-block (C tile at R10, the sub-block's A tile at
// R11 and its rows' d·sc_l after it, the lane's accumulators at R12, dx in
// Z30).
#define Q60ROW(m, Z, V) \
	VCVTDQ2PS m*64(R10), Z; \
	VMULPS.BCST 256+m*4(R11), Z30, V; \
	VFMADD213PS m*64(R12), V, Z; \
	VMOVUPS Z, m*64(R12)

// Q62ROW: Q60ROW for two super-blocks (the second's C tile at R10+1024,
// its wa and xa 5120 and 5184 bytes on, its dx in Z29), in super-block
// order.
#define Q62ROW(m, Z, V, W) \
	VCVTDQ2PS m*64(R10), Z; \
	VMULPS.BCST 256+m*4(R11), Z30, V; \
	VFMADD213PS m*64(R12), V, Z; \
	VCVTDQ2PS 1024+m*64(R10), W; \
	VMULPS.BCST 5120+256+m*4(R11), Z29, V; \
	VFMADD231PS V, W, Z; \
	VMOVUPS Z, m*64(R12)

// func amxQ6_K(w *byte, rb int, wa, xa *byte, nb int, scr *byte, dst *float32, ldd int)
TEXT ·amxQ6_K(SB), NOSPLIT, $0-64
	LEAQ amxQ6KCfg<>(SB), SI
	LDTILECFG_SI
	XORQ DI, DI // the zero stride of the −32·B_l rows
	MOVQ $16, DX
	MOVQ $64, BX
	MOVQ wa+16(FP), R13
	MOVQ xa+24(FP), R8
	MOVQ nb+32(FP), CX
	MOVQ scr+40(FP), R9
	LEAQ 16384(R9), R10
	VPXORD Z0, Z0, Z0
	MOVQ R9, R12
	MOVQ $64, AX
q60zero:
	VMOVUPS Z0, 0(R12)
	VMOVUPS Z0, 64(R12)
	VMOVUPS Z0, 128(R12)
	VMOVUPS Z0, 192(R12)
	ADDQ $256, R12
	DECQ AX
	JNZ q60zero

q60block:
	// Super-blocks in pairs: the accumulators loaded and stored once for
	// two (the kernel is bound by its stores: C tiles and accumulators).
	CMPQ CX, $2
	JLT q60single
	VMOVUPS 5120(R8), Z30
	VMOVUPS 5184+5120(R8), Z29
	MOVQ R9, R12
	XORQ AX, AX // 320·l

q62sub:
	LEAQ 256(R8)(AX*1), SI
	TILELOADD_DI(0)
	LEAQ 5184+256(R8)(AX*1), SI
	TILELOADD_DI(1)
	LEAQ (R13)(AX*1), R11
	MOVQ R11, SI
	TILELOADD_DX(4)
	LEAQ 5120(R11), SI
	TILELOADD_DX(5)
	LEAQ (R8)(AX*1), SI
	TILELOADD_BX(6)
	LEAQ 5184(R8)(AX*1), SI
	TILELOADD_BX(7)
	TDPBUSD(0, 4, 6)
	TDPBUSD(1, 5, 7)
	MOVQ R10, SI
	TILESTORED_BX(0)
	LEAQ 1024(R10), SI
	TILESTORED_BX(1)
	Q62ROW(0, Z0, Z16, Z23)
	Q62ROW(1, Z1, Z17, Z24)
	Q62ROW(2, Z2, Z18, Z25)
	Q62ROW(3, Z3, Z19, Z26)
	Q62ROW(4, Z4, Z20, Z27)
	Q62ROW(5, Z5, Z21, Z28)
	Q62ROW(6, Z6, Z22, Z23)
	Q62ROW(7, Z7, Z16, Z24)
	Q62ROW(8, Z8, Z17, Z25)
	Q62ROW(9, Z9, Z18, Z26)
	Q62ROW(10, Z10, Z19, Z27)
	Q62ROW(11, Z11, Z20, Z28)
	Q62ROW(12, Z12, Z21, Z23)
	Q62ROW(13, Z13, Z22, Z24)
	Q62ROW(14, Z14, Z16, Z25)
	Q62ROW(15, Z15, Z17, Z26)
	ADDQ $1024, R12
	ADDQ $320, AX
	CMPQ AX, $5120
	JLT q62sub
	ADDQ $10240, R13
	ADDQ $10368, R8
	SUBQ $2, CX
	JMP q60block

q60single:
	TESTQ CX, CX
	JZ q60done
	VMOVUPS 5120(R8), Z30
	MOVQ R9, R12
	XORQ AX, AX // 320·l

q61sub:
	LEAQ 256(R8)(AX*1), SI
	TILELOADD_DI(0)
	LEAQ (R13)(AX*1), R11
	MOVQ R11, SI
	TILELOADD_DX(4)
	LEAQ (R8)(AX*1), SI
	TILELOADD_BX(6)
	TDPBUSD(0, 4, 6)
	MOVQ R10, SI
	TILESTORED_BX(0)
	Q60ROW(0, Z0, Z16)
	Q60ROW(1, Z1, Z17)
	Q60ROW(2, Z2, Z18)
	Q60ROW(3, Z3, Z19)
	Q60ROW(4, Z4, Z20)
	Q60ROW(5, Z5, Z21)
	Q60ROW(6, Z6, Z22)
	Q60ROW(7, Z7, Z23)
	Q60ROW(8, Z8, Z24)
	Q60ROW(9, Z9, Z25)
	Q60ROW(10, Z10, Z26)
	Q60ROW(11, Z11, Z27)
	Q60ROW(12, Z12, Z28)
	Q60ROW(13, Z13, Z29)
	Q60ROW(14, Z14, Z31)
	Q60ROW(15, Z15, Z16)
	ADDQ $1024, R12
	ADDQ $320, AX
	CMPQ AX, $5120
	JLT q61sub


q60done:
	TILERELEASE
	Q80OUT(0)
	Q80OUT(1)
	Q80OUT(2)
	Q80OUT(3)
	Q80OUT(4)
	Q80OUT(5)
	Q80OUT(6)
	Q80OUT(7)
	Q80OUT(8)
	Q80OUT(9)
	Q80OUT(10)
	Q80OUT(11)
	Q80OUT(12)
	Q80OUT(13)
	Q80OUT(14)
	Q80OUT(15)
	T16A(0, Z0, Z1)
	T16A(1, Z2, Z3)
	T16A(2, Z4, Z5)
	T16A(3, Z6, Z7)
	T16A(4, Z8, Z9)
	T16A(5, Z10, Z11)
	T16A(6, Z12, Z13)
	T16A(7, Z14, Z15)
	T16B(Z0, Z1, Z2, Z3, Z16, Z17, Z18, Z19)
	T16B(Z4, Z5, Z6, Z7, Z20, Z21, Z22, Z23)
	T16B(Z8, Z9, Z10, Z11, Z24, Z25, Z26, Z27)
	T16B(Z12, Z13, Z14, Z15, Z28, Z29, Z30, Z31)
	MOVQ dst+48(FP), R13
	MOVQ ldd+56(FP), AX
	LEAQ (AX*4), R12
	LEAQ (R12)(R12*2), BX
	T16C(Z16, Z20, Z24, Z28)
	T16C(Z17, Z21, Z25, Z29)
	T16C(Z18, Z22, Z26, Z30)
	T16C(Z19, Z23, Z27, Z31)
	VZEROUPPER
	RET

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
// TILESTORED (SI)(BX*1), tmmT: VEX.128.F3.0F38.W0 4B, ModRM 00 T 100, SIB 00 011 110.
#define TILESTORED_BX(T) BYTE $0xc4; BYTE $0xe2; BYTE $0x7a; BYTE $0x4b; BYTE $(0x04+8*T); BYTE $0x1e
// TDPBUSD tmmC, tmmA, tmmB (C += A·B, A unsigned bytes, B signed):
// VEX.128.66.0F38.W0 5E, vvvv = ~B, ModRM 11 C A.
#define TDPBUSD(C, A, B) BYTE $0xc4; BYTE $0xe2; BYTE $(((15-B)<<3)|1); BYTE $0x5e; BYTE $(0xc0+8*C+A)

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

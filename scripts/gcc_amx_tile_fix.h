/* Forced into every C++ file of the llama.cpp build (Makefile, Dockerfile: CXXFLAGS -include).
 *
 * GCC 12's AMX intrinsics (amxtileintrin.h) describe their memory operands wrongly: ldtilecfg
 * is said to read 8 bytes of the 64-byte tile configuration, and tileloadd to read no memory.
 * At -O2 GCC then drops the stores that fill in the configuration's rows and columns, so
 * ldtilecfg loads stack garbage and faults (SIGSEGV or SIGILL): llama.cpp's AMX kernels crash on
 * the first matrix product of more than one token, on any CPU with AMX. These definitions say
 * what the instructions really read; the rest of the header is left as it is. */
#if defined(__x86_64__) && defined(__AMX_TILE__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>

struct localai_tile_config_bytes {
    unsigned char bytes[64];
};

#undef _tile_loadconfig
#define _tile_loadconfig(config)                                                              \
    __asm__ volatile("ldtilecfg\t%X0" ::"m"(*(const struct localai_tile_config_bytes *)(config)))

/* Two levels, as in GCC's header: the tile register argument (TMM0…) is a macro to expand. */
#undef _tile_loadd
#define _tile_loadd(dst, base, stride) localai_tile_load(tileloadd, dst, base, stride)
#undef _tile_stream_loadd
#define _tile_stream_loadd(dst, base, stride) localai_tile_load(tileloaddt1, dst, base, stride)
#define localai_tile_load(instruction, dst, base, stride)                                     \
    __asm__ volatile(#instruction "\t(%0,%1,1), %%tmm" #dst ::"r"((const void *)(base)),     \
                     "r"((long)(stride))                                                      \
                     : "memory")
#endif

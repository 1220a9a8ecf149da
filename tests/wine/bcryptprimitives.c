/* A stand-in bcryptprimitives.dll for running mailpulse.exe under Wine 8 (tests/wine.rs).
 *
 * Rust's standard library (since 1.78) gets its random numbers from ProcessPrng, exported by
 * bcryptprimitives.dll since Windows 10; Wine 8 has no such DLL, so a Rust program fails to
 * start there. Placed beside the exe, this DLL is found first and answers ProcessPrng from
 * BCryptGenRandom with the system-preferred RNG, which Wine does have. Never shipped: only
 * the tests build it (x86_64-w64-mingw32-gcc -shared ... -lbcrypt). */
#include <windows.h>
#include <bcrypt.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    /* BCryptGenRandom takes a ULONG length: hand out large requests in pieces. */
    while (len > 0) {
        ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!BCRYPT_SUCCESS(BCryptGenRandom(NULL, data, n, BCRYPT_USE_SYSTEM_PREFERRED_RNG)))
            return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}

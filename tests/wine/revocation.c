/* A revocation provider for the test's Wine prefix (tests/wine.rs), standing in for Wine's
 * cryptnet.dll in the registry entry CertDllVerifyRevocation\DEFAULT.
 *
 * Why: SChannel clients (the schannel crate under native-tls) build the chain with
 * CERT_CHAIN_REVOCATION_CHECK_CACHE_ONLY and verify it with
 * CERT_CHAIN_POLICY_IGNORE_ALL_REV_UNKNOWN_FLAGS: on Windows a certificate whose revocation
 * status is unknown or offline passes, a revoked one fails (what browsers do). Wine 8's
 * crypt32 ignores those policy flags and fails every such chain with CERT_E_REVOCATION_FAILURE
 * (0x800B010E), e.g. the test CA's server certificate, which names no CRL.
 *
 * What: every question goes to Wine's own cryptnet.dll. Only its answers "no revocation check
 * possible" and "revocation server offline" for a single certificate become "not revoked",
 * the verdict the policy flags ask for on Windows; "revoked" and everything else pass
 * through unchanged. Never shipped: only the tests build it. */
#include <windows.h>
#include <wincrypt.h>

typedef BOOL (WINAPI *verify_fn)(DWORD, DWORD, DWORD, PVOID *, DWORD, PCERT_REVOCATION_PARA,
                                 PCERT_REVOCATION_STATUS);

BOOL WINAPI CertDllVerifyRevocation(DWORD encoding, DWORD type, DWORD count, PVOID *contexts,
                                    DWORD flags, PCERT_REVOCATION_PARA para,
                                    PCERT_REVOCATION_STATUS status)
{
    HMODULE cryptnet = LoadLibraryW(L"cryptnet.dll");
    verify_fn verify = cryptnet ? (verify_fn)GetProcAddress(cryptnet, "CertDllVerifyRevocation") : NULL;
    BOOL ok;

    if (!verify) {
        SetLastError(CRYPT_E_NO_REVOCATION_DLL);
        return FALSE;
    }
    ok = verify(encoding, type, count, contexts, flags, para, status);
    FreeLibrary(cryptnet);
    if (!ok && count == 1 &&
        (status->dwError == CRYPT_E_NO_REVOCATION_CHECK ||
         status->dwError == CRYPT_E_REVOCATION_OFFLINE)) {
        status->dwIndex = 0;
        status->dwError = ERROR_SUCCESS;
        status->dwReason = 0;
        SetLastError(ERROR_SUCCESS);
        ok = TRUE;
    }
    return ok;
}

/* Test helper for tests/reliability/test_kill_during_write.py (built there with gcc, loaded
 * with LD_PRELOAD): SIGKILL this process when it is about to create a Delta commit file, i.e.
 * a rename or hard link onto ".../_delta_log/<version>.json" whose path contains the value of
 * MLCORE_KILL_AT_COMMIT. Every data file of that write exists by then; the commit does not.
 * delta-rs (object_store) stages a commit and links it to its version, so this is the last
 * moment of a MERGE that runs entirely inside Rust. Inert without MLCORE_KILL_AT_COMMIT. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void maybe_die(const char *target) {
    const char *want = getenv("MLCORE_KILL_AT_COMMIT");
    if (!target || !want || !*want || !strstr(target, want)) return;
    size_t n = strlen(target);
    if (strstr(target, "/_delta_log/") && n > 5 && strcmp(target + n - 5, ".json") == 0)
        kill(getpid(), SIGKILL);
}

int rename(const char *a, const char *b) {
    maybe_die(b);
    int (*real)(const char *, const char *) = dlsym(RTLD_NEXT, "rename");
    return real(a, b);
}

int renameat(int fa, const char *a, int fb, const char *b) {
    maybe_die(b);
    int (*real)(int, const char *, int, const char *) = dlsym(RTLD_NEXT, "renameat");
    return real(fa, a, fb, b);
}

int renameat2(int fa, const char *a, int fb, const char *b, unsigned int flags) {
    maybe_die(b);
    int (*real)(int, const char *, int, const char *, unsigned int) = dlsym(RTLD_NEXT, "renameat2");
    return real(fa, a, fb, b, flags);
}

int link(const char *a, const char *b) {
    maybe_die(b);
    int (*real)(const char *, const char *) = dlsym(RTLD_NEXT, "link");
    return real(a, b);
}

int linkat(int fa, const char *a, int fb, const char *b, int flags) {
    maybe_die(b);
    int (*real)(int, const char *, int, const char *, int) = dlsym(RTLD_NEXT, "linkat");
    return real(fa, a, fb, b, flags);
}

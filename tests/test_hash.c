/*
 * The checksums on inputs larger than a buffer: a million 'a' (the long
 * FIPS 180-4 / RFC 1321-style vectors) and a multi-megabyte file whose
 * digests coreutils' sha256sum and md5sum compute in the same run, hashed
 * whole, as a file, and streamed in uneven pieces.
 */
#include "check.h"
#include "test_util.h"

#include "zoo/zoo.h"

#include <graft.h>
#include <stdlib.h>

static char tmpdir[64];

static void test_million_a(void)
{
    char *a = malloc(1000000), hex[65];
    CHECK(a != NULL);
    if (!a) return;
    memset(a, 'a', 1000000);
    CHECK_OK(graft_hash_hex(GRAFT_HASH_SHA256, a, 1000000, hex));
    CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0);
    CHECK_OK(graft_hash_hex(GRAFT_HASH_MD5, a, 1000000, hex));
    CHECK(strcmp(hex, "7707d6ae4e027c70eea2a935c2296f21") == 0);
    /* The same a byte at a time: the streaming state crosses every block edge. */
    zoo_hash h;
    graft_zoo_hash_init(&h, GRAFT_HASH_SHA256);
    for (int i = 0; i < 1000000; i++)
        graft_zoo_hash_update(&h, "a", 1);
    graft_zoo_hash_final(&h, hex);
    CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0);
    free(a);
}

/* The first word coreutils prints for `tool path` ("" when it cannot run). */
static void coreutils_digest(const char *tool, const char *path, char out[65])
{
    char cmd[256];
    out[0] = '\0';
    snprintf(cmd, sizeof cmd, "%s '%s' 2>/dev/null", tool, path);
    FILE *p = popen(cmd, "r");
    if (!p) return;
    if (fscanf(p, "%64s", out) != 1) out[0] = '\0';
    pclose(p);
}

static void test_large_file(void)
{
    const size_t n = 5 * 1000 * 1000 + 13; /* not a multiple of a block or a buffer */
    uint8_t *data = malloc(n);
    CHECK(data != NULL);
    if (!data) return;
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        data[i] = (uint8_t)(s >> 24);
    }
    char path[128];
    snprintf(path, sizeof path, "%s/large.bin", tmpdir);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) goto done;
    CHECK(fwrite(data, 1, n, f) == n);
    CHECK(fclose(f) == 0);

    const struct {
        graft_hash_kind kind;
        const char *tool;
    } kinds[] = {{GRAFT_HASH_SHA256, "sha256sum"}, {GRAFT_HASH_MD5, "md5sum"}};
    for (int k = 0; k < 2; k++) {
        char want[65], file_hex[65], mem_hex[65], stream_hex[65];
        coreutils_digest(kinds[k].tool, path, want);
        CHECK_MSG(strlen(want) == (kinds[k].kind == GRAFT_HASH_MD5 ? 32u : 64u),
                  "%s gave no digest", kinds[k].tool);
        CHECK_OK(graft_hash_file(kinds[k].kind, path, file_hex));
        CHECK_OK(graft_hash_hex(kinds[k].kind, data, n, mem_hex));
        zoo_hash h;
        graft_zoo_hash_init(&h, kinds[k].kind);
        for (size_t at = 0, step = 1; at < n; at += step, step = step * 3 % 100003 + 1)
            graft_zoo_hash_update(&h, data + at, step < n - at ? step : n - at);
        graft_zoo_hash_final(&h, stream_hex);
        CHECK_MSG(strcmp(file_hex, want) == 0, "%s file: %s, want %s", kinds[k].tool, file_hex,
                  want);
        CHECK_MSG(strcmp(mem_hex, want) == 0, "%s memory: %s", kinds[k].tool, mem_hex);
        CHECK_MSG(strcmp(stream_hex, want) == 0, "%s streamed: %s", kinds[k].tool, stream_hex);
    }
done:
    unlink(path);
    free(data);
}

/* A hash abandoned half-way and a fresh one beside it: nothing is shared. */
static void test_independent_states(void)
{
    zoo_hash a, b;
    char ha[65], hb[65];
    graft_zoo_hash_init(&a, GRAFT_HASH_MD5);
    graft_zoo_hash_init(&b, GRAFT_HASH_SHA256);
    graft_zoo_hash_update(&a, "message ", 8);
    graft_zoo_hash_update(&b, "ab", 2);
    graft_zoo_hash_update(&a, "digest", 6);
    graft_zoo_hash_update(&b, "c", 1);
    graft_zoo_hash_final(&a, ha);
    graft_zoo_hash_final(&b, hb);
    CHECK(strcmp(ha, "f96b697d7cb7938d525a2f31aaf161d0") == 0);
    CHECK(strcmp(hb, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    CHECK(graft_hash_file(GRAFT_HASH_MD5, "/nonexistent/file", ha) == GRAFT_ENOTFOUND);
    CHECK(graft_hash_hex((graft_hash_kind)7, "", 0, ha) == GRAFT_EINVAL);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/graft_hash_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_million_a);
    RUN(test_large_file);
    RUN(test_independent_states);
    remove_tree(tmpdir);
    rmdir(tmpdir);
    return CHECK_SUMMARY();
}

/*
 * SHA-256 and MD5 for checking downloaded weight files and datasets against
 * the checksums Keras publishes (MD5 for most files, as keras.utils.get_file
 * accepts both), through Nettle's implementations.
 */
#include "core/file_open.h"
#include "zoo.h"

#include <string.h>

/* The one place a kind becomes an algorithm. */
static const struct nettle_hash *algorithm(graft_hash_kind kind)
{
    return kind == GRAFT_HASH_MD5 ? &nettle_md5 : &nettle_sha256;
}

void graft_zoo_hash_init(zoo_hash *h, graft_hash_kind kind)
{
    h->alg = algorithm(kind);
    h->alg->init(&h->ctx);
}

void graft_zoo_hash_update(zoo_hash *h, const void *data, size_t len)
{
    if (len) h->alg->update(&h->ctx, len, data);
}

void graft_zoo_hash_final(zoo_hash *h, char hex[65])
{
    uint8_t digest[SHA256_DIGEST_SIZE];
    unsigned n = h->alg->digest_size;
    h->alg->digest(&h->ctx, n, digest);
    static const char digits[] = "0123456789abcdef";
    for (unsigned i = 0; i < n; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    hex[2 * n] = '\0';
}

graft_status graft_hash_hex(graft_hash_kind kind, const void *data, size_t len, char hex[65])
{
    if (kind != GRAFT_HASH_MD5 && kind != GRAFT_HASH_SHA256)
        return graft_fail(GRAFT_EINVAL, "hash: the kind must be MD5 or SHA-256");
    if (!hex || (!data && len)) return graft_fail(GRAFT_EINVAL, "hash: missing argument");
    zoo_hash h;
    graft_zoo_hash_init(&h, kind);
    graft_zoo_hash_update(&h, data, len);
    graft_zoo_hash_final(&h, hex);
    return GRAFT_OK;
}

graft_status graft_hash_file(graft_hash_kind kind, const char *path, char hex[65])
{
    if (kind != GRAFT_HASH_MD5 && kind != GRAFT_HASH_SHA256)
        return graft_fail(GRAFT_EINVAL, "hash: the kind must be MD5 or SHA-256");
    if (!path || !hex) return graft_fail(GRAFT_EINVAL, "hash: missing argument");
    FILE *f;
    graft_status s = graft_fopen_regular(path, &f, NULL);
    if (s != GRAFT_OK) return s;
    zoo_hash h;
    graft_zoo_hash_init(&h, kind);
    static _Thread_local uint8_t buf[1 << 16];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0)
        graft_zoo_hash_update(&h, buf, got);
    bool err = ferror(f);
    fclose(f);
    if (err) return graft_fail(GRAFT_EIO, "read error in %s", path);
    graft_zoo_hash_final(&h, hex);
    return GRAFT_OK;
}

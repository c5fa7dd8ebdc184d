/*
 * Checksums against published test vectors, and the download path against a
 * small HTTP server on 127.0.0.1 run by this test (a thread): a good checksum
 * is accepted and cached, a bad one or a failed transfer leaves no file.
 */
#include "check.h"
#include "test_util.h"

#include <archive.h>
#include <archive_entry.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <graft.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define GENUINE "../shared/models/mobilenet_2_5_224_tf_no_top.h5"
/* From ../shared/MANIFEST.sha256 (sha256sum of the release file). */
#define GENUINE_SHA256 "dbdb03ee2a22fd895301636cd328b234bb3a9952358f436d82f46b81e0d5b0bf"
#define FOX "The quick brown fox jumps over the lazy dog"
#define FOX_MD5 "9e107d9d372bb6826bd81d3542a419d6"

static void check_hex(graft_hash_kind k, const char *msg, size_t len, const char *want)
{
    char hex[65];
    CHECK_OK(graft_hash_hex(k, msg, len, hex));
    CHECK_MSG(strcmp(hex, want) == 0, "%.20s...: %s, want %s", msg, hex, want);
}

static void test_sha256_vectors(void)
{
    /* FIPS 180-2 appendix B and the empty message. */
    check_hex(GRAFT_HASH_SHA256, "", 0,
              "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_hex(GRAFT_HASH_SHA256, "abc", 3,
              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check_hex(GRAFT_HASH_SHA256, two, strlen(two),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    char *million = malloc(1000000);
    if (million) {
        memset(million, 'a', 1000000);
        check_hex(GRAFT_HASH_SHA256, million, 1000000,
                  "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    }
    free(million);
    char hex[65];
    CHECK(graft_hash_file(GRAFT_HASH_SHA256, "/nonexistent/file", hex) == GRAFT_ENOTFOUND);
    NEED_FILE(GENUINE);
    CHECK_OK(graft_hash_file(GRAFT_HASH_SHA256, GENUINE, hex));
    CHECK(strcmp(hex, GENUINE_SHA256) == 0);
}

static void test_md5_vectors(void)
{
    /* RFC 1321, appendix A.5. */
    check_hex(GRAFT_HASH_MD5, "", 0, "d41d8cd98f00b204e9800998ecf8427e");
    check_hex(GRAFT_HASH_MD5, "abc", 3, "900150983cd24fb0d6963f7d28e17f72");
    check_hex(GRAFT_HASH_MD5, "message digest", 14, "f96b697d7cb7938d525a2f31aaf161d0");
    const char *digits = "1234567890123456789012345678901234567890123456789012345678901234567890"
                         "1234567890";
    check_hex(GRAFT_HASH_MD5, digits, 80, "57edf4a22be3c955ac49da2e2107b67a");
    check_hex(GRAFT_HASH_MD5, FOX, strlen(FOX), FOX_MD5);
    /* 56..64-byte tails pad into a second block (value from Python's hashlib). */
    check_hex(GRAFT_HASH_MD5, digits, 56, "49f193adce178490e34d1b3a4ec0064c");
    char hex[65];
    CHECK(graft_hash_hex(GRAFT_HASH_NONE, "", 0, hex) == GRAFT_EINVAL);
}

/* ------------------------------------------------------------ a loopback server */

typedef struct {
    const char *path; /* "/name" */
    const void *body;
    size_t len;
} route;

static struct {
    int fd, port;
    const route *routes;
    int n_routes;
    volatile int stop;
    pthread_t thread;
} srv;

static void send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0) return;
        c += w;
        n -= (size_t)w;
    }
}

static void *serve(void *arg)
{
    (void)arg;
    while (!srv.stop) {
        int c = accept(srv.fd, NULL, NULL);
        if (c < 0) continue;
        char req[2048];
        size_t got = 0;
        while (got < sizeof req - 1) { /* up to the end of the headers */
            ssize_t r = recv(c, req + got, sizeof req - 1 - got, 0);
            if (r <= 0) break;
            got += (size_t)r;
            req[got] = '\0';
            if (strstr(req, "\r\n\r\n")) break;
        }
        req[got] = '\0';
        char path[512] = "";
        sscanf(req, "GET %511s", path);
        const route *hit = NULL;
        for (int i = 0; i < srv.n_routes; i++)
            if (strcmp(srv.routes[i].path, path) == 0) hit = &srv.routes[i];
        char head[256];
        if (hit) {
            int n = snprintf(head, sizeof head,
                             "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                             hit->len);
            send_all(c, head, (size_t)n);
            send_all(c, hit->body, hit->len);
        } else {
            const char *nf = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            send_all(c, nf, strlen(nf));
        }
        close(c);
    }
    return NULL;
}

static int server_start(const route *routes, int n)
{
    srv.fd = socket(AF_INET, SOCK_STREAM, 0);
    if (srv.fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    /* accept() wakes every 200 ms to see the stop flag. */
    struct timeval tv = {0, 200000};
    setsockopt(srv.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (bind(srv.fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(srv.fd, 8) != 0 ||
        getsockname(srv.fd, (struct sockaddr *)&a, &al) != 0) {
        close(srv.fd);
        return -1;
    }
    srv.port = ntohs(a.sin_port);
    srv.routes = routes;
    srv.n_routes = n;
    srv.stop = 0;
    if (pthread_create(&srv.thread, NULL, serve, NULL) != 0) {
        close(srv.fd);
        return -1;
    }
    return 0;
}

static void server_stop(void)
{
    srv.stop = 1;
    pthread_join(srv.thread, NULL);
    close(srv.fd);
}

/* ------------------------------------------------------------ helpers */

static char tmpdir[256];

static int rm_tree(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

static unsigned char *genuine;
static size_t genuine_len;
static const char not_hdf5[] = "<html>a captive portal page, not weights</html>";

static void test_download(void)
{
    NEED_FILE(GENUINE);
    char url[256], dest[1024], dldir[512];
    snprintf(dldir, sizeof dldir, "%s/dl", tmpdir);
    CHECK(mkdir(dldir, 0755) == 0);
    snprintf(dest, sizeof dest, "%s/genuine.h5", dldir);

    snprintf(url, sizeof url, "http://127.0.0.1:%d/genuine.h5", srv.port);
    CHECK_OK(graft_download(url, dest, GRAFT_HASH_SHA256, GENUINE_SHA256));
    size_t len = 0;
    unsigned char *got = read_bytes(dest, &len);
    CHECK(got && len == genuine_len && memcmp(got, genuine, len) == 0);
    free(got);
    CHECK(dir_entries(dldir) == 1);

    /* MD5 as Keras publishes it, upper case accepted. */
    snprintf(dest, sizeof dest, "%s/fox.txt", dldir);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/fox.txt", srv.port);
    CHECK_OK(graft_download(url, dest, GRAFT_HASH_MD5, "9E107D9D372BB6826BD81D3542A419D6"));
    CHECK(access(dest, F_OK) == 0);
    CHECK(dir_entries(dldir) == 2);

    /* A wrong checksum: nothing at dest, no temporary left behind. */
    snprintf(dest, sizeof dest, "%s/bad.h5", dldir);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/genuine.h5", srv.port);
    graft_status s = graft_download(url, dest, GRAFT_HASH_SHA256,
                                    "0000000000000000000000000000000000000000000000000000000000000000");
    CHECK(s == GRAFT_EFORMAT);
    CHECK(strstr(graft_last_error(), "checksum mismatch") && strstr(graft_last_error(), GENUINE_SHA256));
    CHECK(access(dest, F_OK) != 0);
    CHECK(dir_entries(dldir) == 2);

    /* HTTP 404 and a refused connection. */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/missing.h5", srv.port);
    CHECK(graft_download(url, dest, GRAFT_HASH_NONE, NULL) == GRAFT_EIO);
    CHECK(strstr(graft_last_error(), "missing.h5") != NULL);
    CHECK(access(dest, F_OK) != 0);
    CHECK(graft_download("http://127.0.0.1:1/x.h5", dest, GRAFT_HASH_NONE, NULL) == GRAFT_EIO);
    CHECK(dir_entries(dldir) == 2);
    CHECK(graft_download(url, dest, GRAFT_HASH_MD5, "abc") == GRAFT_EINVAL);
}

static void test_cache_dir(void)
{
    char dir[512];
    setenv("GRAFT_HOME", "/somewhere/graft", 1);
    CHECK_OK(graft_zoo_cache_dir(dir, sizeof dir));
    CHECK(strcmp(dir, "/somewhere/graft/models") == 0);
    unsetenv("GRAFT_HOME");
    const char *home = getenv("HOME");
    if (home) {
        char want[512];
        snprintf(want, sizeof want, "%s/.cache/graft/models", home);
        CHECK_OK(graft_zoo_cache_dir(dir, sizeof dir));
        CHECK(strcmp(dir, want) == 0);
    }
    CHECK(graft_zoo_cache_dir(dir, 8) == GRAFT_EINVAL);
}

static void test_fetch_imagenet(void)
{
    NEED_FILE(GENUINE);
    char home[512], base[128], path[1024], models[600];
    snprintf(home, sizeof home, "%s/home", tmpdir);
    snprintf(models, sizeof models, "%s/models", home);
    snprintf(base, sizeof base, "http://127.0.0.1:%d/mirror", srv.port);
    setenv("GRAFT_HOME", home, 1);
    setenv("GRAFT_WEIGHTS_BASE_URL", base, 1);

    graft_zoo_cfg c = graft_zoo_default_cfg();
    c.alpha = 0.25f;
    c.include_top = 0;
    c.input_shape[0] = c.input_shape[1] = 150; /* Keras loads the 224 file */
    CHECK_OK(graft_zoo_fetch_imagenet("mobilenet", &c, path, sizeof path));
    char want[1024];
    snprintf(want, sizeof want, "%s/mobilenet_2_5_224_tf_no_top.h5", models);
    CHECK(strcmp(path, want) == 0);
    char hex[65];
    CHECK(graft_hash_file(GRAFT_HASH_SHA256, path, hex) == GRAFT_OK &&
          strcmp(hex, GENUINE_SHA256) == 0);

    /* The published MD5 of the ResNet50 file does not match what the mirror serves. */
    c = graft_zoo_default_cfg();
    c.include_top = 0;
    CHECK(graft_zoo_fetch_imagenet("resnet50", &c, path, sizeof path) == GRAFT_EFORMAT);
    CHECK(strstr(graft_last_error(), "4d473c1dd8becc155b73f8504c6f6626") != NULL);
    /* No checksum published, and not HDF5: refused and removed. */
    CHECK(graft_zoo_fetch_imagenet("mobilenet_v2", &c, path, sizeof path) == GRAFT_EFORMAT);
    CHECK(strstr(graft_last_error(), "not an HDF5 file") != NULL);
    CHECK(dir_entries(models) == 1);

    /* Cached: no server needed any more. */
    unsetenv("GRAFT_WEIGHTS_BASE_URL");
    server_stop();
    c.alpha = 0.25f;
    c.input_shape[0] = c.input_shape[1] = 224;
    CHECK_OK(graft_zoo_fetch_imagenet("mobilenet", &c, path, sizeof path));
    CHECK(strcmp(path, want) == 0);
    unsetenv("GRAFT_HOME");
}

/* A zip made here with libarchive: name/content pairs. */
static unsigned char *make_zip(const char *const *names, const char *const *bodies, int n, size_t *len)
{
    static unsigned char buf[1 << 16];
    struct archive *a = archive_write_new();
    archive_write_set_format_zip(a);
    size_t used = 0;
    if (archive_write_open_memory(a, buf, sizeof buf, &used) != ARCHIVE_OK) return NULL;
    for (int i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, names[i]);
        archive_entry_set_size(e, (la_int64_t)strlen(bodies[i]));
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_write_header(a, e);
        archive_write_data(a, bodies[i], strlen(bodies[i]));
        archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
    *len = used;
    return buf;
}

/* The lesson's dataset path: get_file(..., extract=True) from a loopback
 * server. An unchecked archive is refused unless allowed; the archive's own
 * SHA-256 or the digest of the files it unpacks to must match before
 * anything moves into place. */
static void test_fetch_dataset(void)
{
    const char *names[] = {"cats_and_dogs_filtered/train/cats/a.txt",
                           "cats_and_dogs_filtered/validation/dogs/b.txt",
                           "cats_and_dogs_filtered/vectorize.py"};
    const char *bodies[] = {"meow", "woof", "print()"};
    size_t zlen = 0;
    unsigned char *zip = make_zip(names, bodies, 3, &zlen);
    CHECK(zip != NULL && zlen > 0);
    static unsigned char good[1 << 16], evil[1 << 16];
    memcpy(good, zip, zlen);
    size_t glen = zlen;
    char good_sha[65];
    CHECK_OK(graft_hash_hex(GRAFT_HASH_SHA256, good, glen, good_sha));
    const char *bad_names[] = {"../escaped.txt"};
    zip = make_zip(bad_names, bodies, 1, &zlen);
    memcpy(evil, zip, zlen);
    route routes[] = {{"/cd.zip", good, glen}, {"/evil.zip", evil, zlen}, {"/junk.zip", "not a zip", 9}};
    if (server_start(routes, 3) != 0) {
        CHECK_MSG(0, "cannot start a loopback server");
        return;
    }
    char url[128], dest[512], p[600];
    snprintf(dest, sizeof dest, "%s/datasets", tmpdir);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/cd.zip", srv.port);
    /* Nothing to check it by: refused before anything is downloaded. */
    CHECK(graft_dataset_fetch(url, dest, NULL) == GRAFT_EINVAL);
    CHECK(strstr(graft_last_error(), "without a checksum") != NULL);
    CHECK(dir_entries(dest) <= 0);
    /* A wrong archive checksum: nothing kept. */
    graft_fetch_opts o = {.hash_kind = GRAFT_HASH_SHA256,
                          .hash = "0000000000000000000000000000000000000000000000000000000000000000"};
    CHECK(graft_dataset_fetch(url, dest, &o) == GRAFT_EFORMAT);
    CHECK(dir_entries(dest) == 0);
    /* The right one. */
    o.hash = good_sha;
    CHECK_OK(graft_dataset_fetch(url, dest, &o));
    snprintf(p, sizeof p, "%s/cats_and_dogs_filtered/train/cats/a.txt", dest);
    size_t n = 0;
    unsigned char *got = read_bytes(p, &n);
    CHECK(got && n == 4 && memcmp(got, "meow", 4) == 0);
    free(got);
    CHECK(dir_entries(dest) == 1); /* the archive and the temporary folder are gone */
    /* Unpacking again never replaces what is there. */
    CHECK(graft_dataset_fetch(url, dest, &o) == GRAFT_EIO);
    CHECK(strstr(graft_last_error(), "already exists") != NULL);
    CHECK(dir_entries(dest) == 1);
    rm_tree(dest);
    /* By the digest of the unpacked files: only the folders it covers are kept. */
    static const char *const dirs[] = {"cats_and_dogs_filtered/train", "cats_and_dogs_filtered/validation"};
    graft_fetch_opts t = {.tree_sha256 = "1111111111111111111111111111111111111111111111111111111111111111",
                          .tree_dirs = dirs, .n_tree_dirs = 2};
    CHECK(graft_dataset_fetch(url, dest, &t) == GRAFT_EFORMAT);
    CHECK(strstr(graft_last_error(), "not the expected ones") != NULL);
    CHECK(dir_entries(dest) == 0);
    /* sha256sum's lines for the two files, sorted by path, then their SHA-256. */
    char a_sha[65], b_sha[65], lines[400], want[65];
    CHECK_OK(graft_hash_hex(GRAFT_HASH_SHA256, "meow", 4, a_sha));
    CHECK_OK(graft_hash_hex(GRAFT_HASH_SHA256, "woof", 4, b_sha));
    snprintf(lines, sizeof lines, "%s  %s\n%s  %s\n", a_sha, names[0], b_sha, names[1]);
    CHECK_OK(graft_hash_hex(GRAFT_HASH_SHA256, lines, strlen(lines), want));
    t.tree_sha256 = want;
    CHECK_OK(graft_dataset_fetch(url, dest, &t));
    CHECK(access(p, F_OK) == 0);
    snprintf(p, sizeof p, "%s/cats_and_dogs_filtered/vectorize.py", dest);
    CHECK(access(p, F_OK) != 0);
    snprintf(p, sizeof p, "%s/cats_and_dogs_filtered", dest);
    CHECK(dir_entries(p) == 2);
    /* Explicitly unchecked. */
    graft_fetch_opts unchecked = {.insecure = 1};
    snprintf(url, sizeof url, "http://127.0.0.1:%d/evil.zip", srv.port);
    CHECK(graft_dataset_fetch(url, dest, &unchecked) == GRAFT_EFORMAT);
    snprintf(p, sizeof p, "%s/escaped.txt", tmpdir);
    CHECK(access(p, F_OK) != 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/junk.zip", srv.port);
    CHECK(graft_dataset_fetch(url, dest, &unchecked) == GRAFT_EFORMAT);
    CHECK(dir_entries(dest) == 1);
    server_stop();
}

int main(void)
{
    RUN(test_sha256_vectors);
    RUN(test_md5_vectors);
    RUN(test_cache_dir);
    genuine = read_bytes(GENUINE, &genuine_len);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/graft_zoo_dl_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "  cannot make a temporary folder\n");
        tests_failed++;
        return CHECK_SUMMARY();
    }
    const route routes[] = {
        {"/genuine.h5", genuine, genuine_len},
        {"/fox.txt", FOX, strlen(FOX)},
        {"/mirror/mobilenet_2_5_224_tf_no_top.h5", genuine, genuine_len},
        {"/mirror/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", genuine, genuine_len},
        {"/mirror/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5", not_hdf5,
         sizeof not_hdf5 - 1},
    };
    if (genuine && server_start(routes, (int)(sizeof routes / sizeof *routes)) != 0) {
        fprintf(stderr, "  cannot listen on 127.0.0.1\n");
        tests_failed++;
    } else { /* without GENUINE, which they serve, no server: both skip */
        RUN(test_download);
        RUN(test_fetch_imagenet); /* stops the server */
    }
    RUN(test_fetch_dataset); /* with a server of its own */
    rm_tree(tmpdir);
    free(genuine);
    return CHECK_SUMMARY();
}
